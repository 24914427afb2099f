"""The SECURITY DEFINER ingest functions read a temp stage the caller created. A
caller (the runner role) must not be able to make them run its code with the
owner's rights: a view in the stage's place, a trigger, a default or a custom
type are refused, and the table the attack aimed at is unchanged."""

from __future__ import annotations

import psycopg
import pytest

EVIL = """
CREATE FUNCTION pg_temp.evil() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tickagg.settings SET setting_value = '999 days' WHERE setting_key = 'ticks_retention';
    RETURN 1;
END $$
"""

TICKS_COLUMNS = (
    "canonical_symbol text, ts_utc timestamptz, bid float8, ask float8, last_price float8,"
    " size float8"
)

# (stage to plant, the call that reads it, how the stage runs pg_temp.evil())
ATTACKS = {
    "view instead of the ticks stage": (
        [
            "CREATE TEMP VIEW tickagg_ticks_stage AS SELECT pg_temp.evil() AS row_no,"
            " NULL::text AS canonical_symbol, NULL::timestamptz AS ts_utc, NULL::float8 AS bid,"
            " NULL::float8 AS ask, NULL::float8 AS last_price, NULL::float8 AS size"
        ],
        "SELECT tickagg.ingest_staged_ticks('x')",
    ),
    "default on the ticks stage (the text path inserts into it)": (
        [
            f"CREATE TEMP TABLE tickagg_ticks_stage (row_no bigint DEFAULT pg_temp.evil(),"
            f" {TICKS_COLUMNS})",
            "CREATE TEMP TABLE tickagg_ticks_text_stage (line_no bigint, canonical_symbol text,"
            " ts_utc text, bid text, ask text, last_price text, size text, problem text)",
            "INSERT INTO tickagg_ticks_text_stage VALUES (2, 'X', '2025-01-01', '1', '2', '1',"
            " '1', NULL)",
        ],
        "SELECT tickagg.ingest_staged_ticks('x', p_text_stage => true)",
    ),
    "trigger on the bars stage": (
        [
            "CREATE TEMP TABLE tickagg_bars_stage (line_no bigint, canonical_symbol text,"
            " ts_utc text, open text, high text, low text, close text, volume text, source text,"
            " vwap text, trade_count text)",
            "CREATE FUNCTION pg_temp.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_temp.evil(); RETURN NULL; END $$",
            "CREATE TRIGGER t AFTER INSERT ON pg_temp.tickagg_bars_stage"
            " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil_trigger()",
        ],
        "SELECT tickagg.ingest_staged_bars('x')",
    ),
    "custom type in the bars stage": (
        [
            "CREATE DOMAIN pg_temp.evil_text AS text CHECK (pg_temp.evil() = 1)",
            "CREATE TEMP TABLE tickagg_bars_stage (line_no bigint, canonical_symbol text,"
            " ts_utc pg_temp.evil_text, open text, high text, low text, close text, volume text,"
            " source text, vwap text, trade_count text)",
        ],
        "SELECT tickagg.ingest_staged_bars('x')",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_planted_stage_is_refused_and_runs_nothing(conn, role_dsn, attack):
    statements, call = ATTACKS[attack]
    with psycopg.connect(role_dsn()) as runner:
        runner.execute(EVIL)
        for stmt in statements:
            runner.execute(stmt)
        with pytest.raises(psycopg.Error) as caught:
            runner.execute(call)
        assert caught.value.sqlstate == "TK004", caught.value
        assert "not a plain temp table" in str(caught.value)
    value = conn.execute(
        "SELECT setting_value FROM tickagg.settings WHERE setting_key = 'ticks_retention'"
    ).fetchone()["setting_value"]
    assert value == "7 days"


def test_a_missing_stage_says_so(role_dsn):
    with psycopg.connect(role_dsn()) as runner:
        with pytest.raises(psycopg.Error) as caught:
            runner.execute("SELECT tickagg.ingest_staged_bars('x')")
        assert caught.value.sqlstate == "TK004" and "no stage table" in str(caught.value)
