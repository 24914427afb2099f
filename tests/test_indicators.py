"""Technical indicators (issue 7) against TA-Lib, the oracle.

Random walks of several thousand bars per timeframe (with gaps and a flat
stretch) go straight into derived_data_bars; the indicators tasks compute them
in random-size chunks through the task machinery (claim, indicators_step,
agg_finish), then random late corrections (rewritten, soft-deleted and new bars
in the middle) recompute forward. Every value must equal TA-Lib's single pass
over the live bars: relative error under 1e-9 after warm-up, null before.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid

import helpers as h
import numpy as np
import psycopg
import pytest
import talib

from runner import clickhouse, queries

UTC = dt.UTC
START = dt.datetime(2025, 1, 6, tzinfo=UTC)
REL = 1e-9
STEPS = {"5m": dt.timedelta(minutes=5), "1h": dt.timedelta(hours=1), "1d": dt.timedelta(days=1)}


def _walk(rng: random.Random, n: int, step: dt.timedelta, base: float) -> list[dict]:
    """n bars of a random walk on a crypto_24x7 grid with holes, a flat stretch
    (zero ranges, equal closes) and some bars without vwap or volume."""
    bars, ts, close = [], START, base
    flat = range(n // 3, n // 3 + 40)
    while len(bars) < n:
        ts += step * (1 if rng.random() > 0.05 else rng.randint(2, 6))
        if len(bars) in flat:
            o = hi = lo = c = close
        else:
            o = close
            c = max(o * (1 + rng.gauss(0, 0.004)), base * 0.05)
            hi = max(o, c) * (1 + abs(rng.gauss(0, 0.002)))
            lo = min(o, c) * (1 - abs(rng.gauss(0, 0.002)))
        close = c
        vol = 0.0 if rng.random() < 0.02 else round(rng.uniform(1, 1000), 3)
        vwap = None if rng.random() < 0.01 else lo + (hi - lo) * rng.random()
        bars.append(dict(ts=ts, end=ts + step, o=o, h=hi, l=lo, c=c, v=vol, vwap=vwap))
    return bars


def _insert(conn, sym: str, tf: str, bars: list[dict]) -> None:
    """The bars as one write (one COPY = one statement trigger), as a rollup run
    writes its buckets."""
    with conn.cursor().copy(
        "COPY tickagg.derived_data_bars (canonical_symbol, timeframe, ts_utc, bucket_end, open,"
        " high, low, close, volume, vwap, trade_count, source_candles, expected_candles,"
        " quality_score, is_partial) FROM STDIN"
    ) as cp:
        for b in bars:
            cp.write_row(
                (sym, tf, b["ts"], b["end"], b["o"], b["h"], b["l"], b["c"], b["v"], b["vwap"],
                 None, 1, 1, 2, False)
            )  # fmt: skip


def _setup(conn, sym="IND", tfs=("5m", "1h", "1d"), n=3000, seed=1, base=100.0):
    rng = random.Random(seed)
    h.register(conn, sym, "crypto_24x7")
    h.sync(conn, START)
    # the bars come straight from the test: rollups (and scans) sit out
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false"
        " WHERE canonical_symbol = %s AND task_kind <> 'indicators'",
        (sym,),
    )
    for tf in tfs:
        _insert(conn, sym, tf, _walk(rng, n, STEPS[tf], base))
    return rng


def _drive_indicators(conn, rng: random.Random | None = None, max_bars: int | None = None) -> int:
    """Claim and run due indicators tasks (random chunk sizes when rng is given)
    until none is due. Returns the runs."""
    runs = 0
    while True:
        tasks = conn.execute(
            "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 100, 300)"
            " WHERE task_kind = 'indicators'"
        ).fetchall()
        if not tasks:
            return runs
        for t in tasks:
            size = rng.choice([1, 7, 50, 333, 1000, 5000]) if rng else max_bars
            h.indicators_run(conn, t, size)
            runs += 1
            assert runs < 5000, "runaway"


def _series(conn, sym: str, tf: str):
    # fresh tables have no statistics: without them a join plans as nested seq scans
    conn.execute("ANALYZE tickagg.derived_data_bars, tickagg.derived_bar_indicators")
    rows = conn.execute(
        "SELECT b.ts_utc, b.open, b.high, b.low, b.close, b.volume, b.vwap, i.indicators"
        " FROM tickagg.derived_data_bars AS b LEFT JOIN tickagg.bar_indicators AS i"
        " USING (canonical_symbol, timeframe, ts_utc)"
        " WHERE b.canonical_symbol = %s AND b.timeframe = %s AND b.deleted_at IS NULL"
        " ORDER BY b.ts_utc",
        (sym, tf),
    ).fetchall()
    return rows


def _talib(rows) -> dict[str, np.ndarray]:
    hi = np.array([r["high"] for r in rows], dtype=float)
    lo = np.array([r["low"] for r in rows], dtype=float)
    c = np.array([r["close"] for r in rows], dtype=float)
    v = np.array([r["volume"] for r in rows], dtype=float)
    out = {}
    for p in (7, 14, 21, 50, 200):
        out[f"sma_{p}"] = talib.SMA(c, p)
        out[f"ema_{p}"] = talib.EMA(c, p)
    out["rsi"] = talib.RSI(c, 14)
    out["macd"], out["macd_signal"], out["macd_histogram"] = talib.MACD(c, 12, 26, 9)
    up, mid, low = talib.BBANDS(c, 20, 2, 2, 0)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = up, mid, low
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bb_width"] = np.where(mid != 0, (up - low) / mid, np.nan)
    out["atr"] = talib.ATR(hi, lo, c, 14)
    out["stoch_k"], out["stoch_d"] = talib.STOCH(hi, lo, c, 14, 3, 0, 3, 0)
    out["cci"] = talib.CCI(hi, lo, c, 20)
    out["mfi"] = talib.MFI(hi, lo, c, v, 14)
    out["obv"] = talib.OBV(c, v)
    out["adl"] = talib.AD(hi, lo, c, v)
    out["adx"] = talib.ADX(hi, lo, c, 14)
    out["plus_di"] = talib.PLUS_DI(hi, lo, c, 14)
    out["minus_di"] = talib.MINUS_DI(hi, lo, c, 14)
    return out


def _day_vwap(rows) -> list[float | None]:
    """Independent vwap oracle: crypto_24x7 trading days are UTC dates."""
    out, day, pv, vol, void = [], None, 0.0, 0.0, False
    for r in rows:
        d = r["ts_utc"].astimezone(UTC).date()
        if d != day:
            day, pv, vol, void = d, 0.0, 0.0, False
        if r["volume"] > 0:
            if r["vwap"] is None:
                void = True
            else:
                pv += r["vwap"] * r["volume"]
                vol += r["volume"]
        out.append(pv / vol if not void and vol > 0 else None)
    return out


def _rel(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _check(conn, sym: str, tf: str) -> dict[str, float]:
    """Every indicator of every live bar against TA-Lib; returns the worst
    relative error per indicator."""
    rows = _series(conn, sym, tf)
    ref = _talib(rows)
    ref_vwap = _day_vwap(rows)
    worst: dict[str, float] = {}
    for i, r in enumerate(rows):
        got = r["indicators"]
        assert got is not None, f"{tf} bar {r['ts_utc']} has no indicators"
        for key, arr in ref.items():
            want = arr[i]
            have = got[key]
            if math.isnan(want):
                assert have is None, f"{tf} {key} bar {i}: {have} before warm-up, TA-Lib NaN"
                continue
            assert have is not None, f"{tf} {key} bar {i}: null, TA-Lib {want}"
            err = _rel(have, float(want))
            if key == "bb_width":
                # a difference of the bands: exact to the bands' own precision, so its
                # error is measured against them (near-flat windows cancel digits)
                scale = (abs(got["bb_upper"]) + abs(got["bb_lower"])) / abs(got["bb_middle"])
                err = abs(have - float(want)) / max(abs(have), abs(float(want)), scale)
            worst[key] = max(worst.get(key, 0.0), err)
            assert err < REL, f"{tf} {key} bar {i} ({r['ts_utc']}): {have} vs TA-Lib {want}"
        want = ref_vwap[i]
        if want is None:
            assert got["vwap"] is None, f"{tf} vwap bar {i}"
        else:
            assert _rel(got["vwap"], want) < 1e-12, f"{tf} vwap bar {i}: {got['vwap']} vs {want}"
    return worst


def _correct(conn, rng: random.Random, sym: str, tf: str) -> None:
    """Late data in the middle of the series: rewritten bars (as a rollup would
    write them: new derivation_version and change_no), a soft-deleted bar, a
    revived one and a new bar in a gap."""
    rows = conn.execute(
        "SELECT ts_utc, bucket_end, close FROM tickagg.derived_data_bars"
        " WHERE canonical_symbol = %s AND timeframe = %s AND deleted_at IS NULL ORDER BY ts_utc",
        (sym, tf),
    ).fetchall()
    n = len(rows)
    for _ in range(3):
        r = rows[rng.randrange(n // 4, n)]
        f = 1 + rng.gauss(0, 0.01)
        conn.execute(
            "UPDATE tickagg.derived_data_bars SET close = close * %s,"
            " high = greatest(high, close * %s), low = least(low, close * %s),"
            " volume = volume + 17,"
            " derivation_version = derivation_version + 1,"
            " change_no = nextval('tickagg.bar_change_seq')"
            " WHERE canonical_symbol = %s AND timeframe = %s AND ts_utc = %s",
            (f, f, f, sym, tf, r["ts_utc"]),
        )
    gone = rows[rng.randrange(n // 2, n)]["ts_utc"]
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET deleted_at = now(),"
        " derivation_version = derivation_version + 1,"
        " change_no = nextval('tickagg.bar_change_seq')"
        " WHERE canonical_symbol = %s AND timeframe = %s AND ts_utc = %s",
        (sym, tf, gone),
    )
    for a, b in zip(rows[n // 3 :], rows[n // 3 + 1 :], strict=False):
        if b["ts_utc"] - a["bucket_end"] >= STEPS[tf]:
            c = a["close"]
            _insert(
                conn,
                sym,
                tf,
                [dict(ts=a["bucket_end"], end=a["bucket_end"] + STEPS[tf], o=c, h=c * 1.003,
                      l=c * 0.998, c=c * 1.001, v=42.0, vwap=c)],
            )  # fmt: skip
            break


def test_indicators_equal_talib_in_random_chunks_and_after_corrections(conn):
    rng = _setup(conn)
    _drive_indicators(conn, rng)
    for tf in STEPS:
        _check(conn, "IND", tf)
    for round_no in range(2):
        for tf in STEPS:
            _correct(conn, rng, "IND", tf)
        pending = conn.execute(
            "SELECT count(DISTINCT timeframe) AS n FROM tickagg.indicator_rewinds"
        ).fetchone()
        assert pending["n"] == 3, "each corrected series queues its rewind"
        _drive_indicators(conn, rng)
        for tf in STEPS:
            worst = _check(conn, "IND", tf)
        print(f"round {round_no}:", {k: f"{v:.1e}" for k, v in worst.items() if v > 1e-13})


def _set_indicator_timeframes(conn, value: str) -> dict:
    """Change the setting and sync, as a user would; the rollups stay out (the
    test writes the bars) and the counts of sync are returned."""
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = %s WHERE setting_key = 'indicator_timeframes'",
        (value,),
    )
    res = h.sync(conn, START)
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind <> 'indicators'"
    )
    return res


def _indicator_footprint(conn) -> dict[str, set[str]]:
    """The timeframes that have indicator tasks, values, checkpoints and rewinds."""
    rows = conn.execute(
        "SELECT 'tasks' AS what, timeframe FROM tickagg.data_agg_state"
        " WHERE task_kind = 'indicators'"
        " UNION SELECT 'values', timeframe FROM tickagg.derived_bar_indicators"
        " UNION SELECT 'checkpoints', timeframe FROM tickagg.indicator_checkpoints"
        " UNION SELECT 'rewinds', timeframe FROM tickagg.indicator_rewinds"
    ).fetchall()
    return {
        what: {r["timeframe"] for r in rows if r["what"] == what}
        for what in ("tasks", "values", "checkpoints", "rewinds")
    }


def test_indicator_timeframes_narrowed_and_widened(conn):
    """indicator_timeframes narrowed to 1h: the other timeframes lose their tasks,
    values, checkpoints and rewinds, and corrections there queue nothing; 1h still
    follows its corrections. Widened again (then sync), the other series are
    computed from their first bar, in random chunks, equal to TA-Lib."""
    rng = _setup(conn, sym="TFS", n=1500, seed=12)
    _drive_indicators(conn, rng)
    for tf in STEPS:
        _check(conn, "TFS", tf)

    res = _set_indicator_timeframes(conn, " 1H ")
    assert res["indicators_tasks_removed"] == 6  # 5m 15m 30m 4h 1d 1w
    assert _indicator_footprint(conn) == {
        "tasks": {"1h"}, "values": {"1h"}, "checkpoints": {"1h"}, "rewinds": set()
    }  # fmt: skip
    for tf in STEPS:
        _correct(conn, rng, "TFS", tf)
    assert _indicator_footprint(conn)["rewinds"] == {"1h"}, "no rewinds for a disabled timeframe"
    _drive_indicators(conn, rng)
    assert _indicator_footprint(conn)["values"] == {"1h"}, "no runs for a disabled timeframe"
    _check(conn, "TFS", "1h")

    res = _set_indicator_timeframes(conn, "none")
    assert res["indicators_tasks_removed"] == 1
    assert _indicator_footprint(conn) == {
        "tasks": set(), "values": set(), "checkpoints": set(), "rewinds": set()
    }  # fmt: skip

    res = _set_indicator_timeframes(conn, "all")
    assert res["indicators_tasks_created"] == 7
    for tf in STEPS:
        _correct(conn, rng, "TFS", tf)
    _drive_indicators(conn, rng)
    for tf in STEPS:
        _check(conn, "TFS", tf)

    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '1h,2h'"
        " WHERE setting_key = 'indicator_timeframes'"
    )
    with pytest.raises(psycopg.Error, match='"2h", which is no derived timeframe') as err:
        h.sync(conn, START)
    assert err.value.sqlstate == "TK004"
    assert _indicator_footprint(conn)["tasks"] == set(STEPS) | {"15m", "30m", "4h", "1w"}


def test_forex_scale_prices(conn):
    """Prices near 1.1 with tiny moves: the cancellation-prone indicators
    (Bollinger's sum of squares, CCI) must still agree."""
    _setup(conn, sym="FXI", tfs=("5m",), n=2500, seed=5, base=1.0859375)
    _drive_indicators(conn, max_bars=800)
    _check(conn, "FXI", "5m")


def test_incremental_one_bar_at_a_time_equals_one_pass(conn):
    _setup(conn, sym="ONE", tfs=("1h",), n=600, seed=3)
    _drive_indicators(conn, max_bars=1)
    one = {r["ts_utc"]: r["indicators"] for r in _series(conn, "ONE", "1h")}
    # every 256 bars plus the end of the last run, not one per run
    cps = conn.execute("SELECT bar_no FROM tickagg.indicator_checkpoints ORDER BY 1").fetchall()
    assert [c["bar_no"] for c in cps] == [256, 512, 600]
    conn.execute("DELETE FROM tickagg.derived_bar_indicators")
    conn.execute("DELETE FROM tickagg.indicator_checkpoints")
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = agg_start_utc, next_run_at = now()"
        " WHERE task_kind = 'indicators'"
    )
    _drive_indicators(conn, max_bars=100000)
    assert {r["ts_utc"]: r["indicators"] for r in _series(conn, "ONE", "1h")} == one
    _check(conn, "ONE", "1h")


def test_a_correction_rewrites_only_the_values_it_changes(conn):
    """A rewind recomputes from the checkpoint before the corrected bar, in runs that
    start inside the stored values: a row is rewritten (new change_no, which the
    ClickHouse export follows) exactly when its values changed, so the replayed bars
    before the correction keep theirs; the values still equal TA-Lib."""
    _setup(conn, sym="ONLY", tfs=("1h",), n=800, seed=5)
    _drive_indicators(conn, max_bars=300)
    query = (
        "SELECT ts_utc, change_no, vals FROM tickagg.derived_bar_indicators"
        " WHERE canonical_symbol = 'ONLY'"
    )
    before = {r["ts_utc"]: r for r in conn.execute(query).fetchall()}
    corrected = sorted(before)[600]  # the checkpoint before it is bar 512
    _bump_close(conn, "ONLY", corrected)
    # runs of 100 bars: the first replays bars 512-599 unchanged, then writes the changes
    _drive_indicators(conn, max_bars=100)
    after = {r["ts_utc"]: r for r in conn.execute(query).fetchall()}
    assert after.keys() == before.keys()
    rewritten = {ts for ts in after if after[ts]["change_no"] != before[ts]["change_no"]}
    changed = {ts for ts in after if after[ts]["vals"] != before[ts]["vals"]}
    assert rewritten == changed
    assert min(changed) == corrected
    _check(conn, "ONLY", "1h")


def test_json_names_and_warmup(conn):
    _setup(conn, sym="KEY", tfs=("1h",), n=300, seed=4)
    _drive_indicators(conn)
    rows = _series(conn, "KEY", "1h")
    names = {
        *(f"{k}_{p}" for k in ("sma", "ema") for p in (7, 14, 21, 50, 200)),
        "rsi", "macd", "macd_signal", "macd_histogram", "bb_middle", "bb_upper", "bb_lower",
        "bb_width", "atr", "stoch_k", "stoch_d", "cci", "mfi", "obv", "adl", "adx", "plus_di",
        "minus_di", "vwap",
    }  # fmt: skip
    assert all(set(r["indicators"]) == names for r in rows)
    # TA-Lib's lookbacks
    warmup = {
        "sma_200": 199, "ema_50": 49, "rsi": 14, "macd": 33, "bb_middle": 19, "atr": 14,
        "stoch_k": 17, "cci": 19, "mfi": 14, "obv": 0, "adl": 0, "adx": 27, "plus_di": 14,
    }  # fmt: skip
    for key, lookback in warmup.items():
        first = next(i for i, r in enumerate(rows) if r["indicators"][key] is not None)
        assert first == lookback, key
    raw = conn.execute("SELECT indicators::text AS t FROM tickagg.bar_indicators").fetchall()
    assert not any("NaN" in r["t"] or "Infinity" in r["t"] for r in raw)
    # the stored arrays hold NULL, never the NaN the step uses while computing
    stored = conn.execute(
        "SELECT count(*) AS n FROM tickagg.derived_bar_indicators AS i, unnest(i.vals) AS v"
        " WHERE v IN ('NaN', 'Infinity', '-Infinity')"
    ).fetchone()
    assert stored["n"] == 0
    # the JSON numbers are the stored doubles whatever the reader's extra_float_digits
    conn.execute("SET extra_float_digits = 0")
    exact = conn.execute(
        "SELECT count(*) AS n,"
        " count(*) FILTER (WHERE (v.indicators ->> 'ema_7')::float8 = i.vals[6]) AS same"
        " FROM tickagg.bar_indicators AS v"
        " JOIN tickagg.derived_bar_indicators AS i USING (canonical_symbol, timeframe, ts_utc)"
        " WHERE i.vals[6] IS NOT NULL"
    ).fetchone()
    conn.execute("RESET extra_float_digits")
    assert exact["n"] > 250 and exact["same"] == exact["n"]


def test_indicator_writes_leave_bars_and_rollups_alone(conn, dsn):
    """Real pipeline: 1m bars -> rollups -> indicators. Writing indicators queues
    no rollup invalidation, bumps no derivation_version and leaves the bars'
    change numbers alone; a late 1m correction recomputes forward."""
    from oracle import random_bars

    rng = random.Random(11)
    h.register(conn, "PIP", "crypto_24x7")
    h.insert_bars(
        conn, "PIP", random_bars("crypto_24x7", dt.date(2025, 3, 3), dt.date(2025, 3, 8), rng)
    )
    h.sync(conn, dt.datetime(2025, 3, 3, tzinfo=UTC))
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind LIKE 'gap_scan%'"
    )
    conn.execute(
        "UPDATE tickagg.data_agg_state SET enabled = false, next_run_at = now()"
        " WHERE task_kind = 'indicators'"
    )
    h.drive(dsn)
    before = h.all_rows_meta(conn, "PIP")
    assert (
        conn.execute("SELECT count(*) AS n FROM tickagg.derived_bar_indicators").fetchone()["n"]
        == 0
    )
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = true WHERE task_kind = 'indicators'")
    h.drive(dsn)
    assert h.all_rows_meta(conn, "PIP") == before
    assert h.pending_invalidations(conn) == 0
    assert conn.execute("SELECT count(*) AS n FROM tickagg.agg_invalidations").fetchone()["n"] == 0
    for tf in ("5m", "15m", "30m", "1h", "4h", "1d"):
        _check(conn, "PIP", tf)
    # a late minute in the middle: the 5m..1d bars over it change, indicators follow
    minute = dt.datetime(2025, 3, 5, 12, 7, tzinfo=UTC)
    conn.execute(
        "UPDATE tickagg.data_bars SET close = close * 1.01, high = greatest(high, close * 1.01)"
        " WHERE canonical_symbol = 'PIP' AND ts_utc = %s",
        (minute,),
    )
    h.drive(dsn)
    for tf in ("5m", "15m", "30m", "1h", "4h", "1d"):
        _check(conn, "PIP", tf)
    status = conn.execute(
        "SELECT count(*) AS n FROM tickagg.data_agg_state WHERE task_kind = 'indicators'"
        " AND last_agg_bar_ts_utc < (SELECT max(bucket_end) FROM tickagg.derived_data_bars d"
        "  WHERE d.canonical_symbol = 'PIP' AND d.timeframe = data_agg_state.timeframe)"
    ).fetchone()
    assert status["n"] == 0, "every indicators cursor reached its last bar"
    lagging = conn.execute(
        "SELECT count(*) AS n FROM tickagg.aggregation_health"
        " WHERE task_kind = 'indicators' AND refresh_lag > interval '0'"
    ).fetchone()
    assert lagging["n"] == 0, "an indicators task with every bar computed has no lag"
    conn.execute(
        "UPDATE tickagg.data_agg_state SET last_agg_bar_ts_utc = agg_start_utc"
        " WHERE task_kind = 'indicators' AND timeframe = '1h'"
    )
    lag = conn.execute(
        "SELECT refresh_lag FROM tickagg.aggregation_health"
        " WHERE task_kind = 'indicators' AND timeframe = '1h'"
    ).fetchone()["refresh_lag"]
    first_end = conn.execute(
        "SELECT min(bucket_end) AS e FROM tickagg.derived_data_bars WHERE timeframe = '1h'"
    ).fetchone()["e"]
    assert lag >= dt.datetime.now(UTC) - first_end - dt.timedelta(minutes=5)


def test_anchored_vwap(conn):
    _setup(conn, sym="AVW", tfs=("1h",), n=400, seed=9)
    rows = _series(conn, "AVW", "1h")
    anchor = rows[100]["ts_utc"] - dt.timedelta(minutes=1)
    got = conn.execute("SELECT * FROM tickagg.anchored_vwap('AVW', '1h', %s)", (anchor,)).fetchall()
    assert [g["ts_utc"] for g in got] == [r["ts_utc"] for r in rows[100:]]
    pv = vol = 0.0
    void = False
    for g, r in zip(got, rows[100:], strict=True):
        if r["volume"] > 0:
            if r["vwap"] is None:
                void = True
            else:
                pv += r["vwap"] * r["volume"]
                vol += r["volume"]
        want = pv / vol if vol > 0 and not void else None
        if want is None:
            assert g["anchored_vwap"] is None
        else:
            assert _rel(g["anchored_vwap"], want) < 1e-12
    with pytest.raises(Exception, match="unknown symbol"):
        conn.execute("SELECT * FROM tickagg.anchored_vwap('NOPE', '1h', now())")


def test_runner_role_reads_view_and_runs_step(conn, role_dsn):
    _setup(conn, sym="ROL", tfs=("1h",), n=50, seed=2)
    from psycopg.rows import dict_row

    with psycopg.connect(role_dsn(), autocommit=True, row_factory=dict_row) as rc:
        res = queries.indicators_step(rc, "ROL", "1h", START, 20)
        assert res["bars_computed"] == 20
        assert rc.execute("SELECT count(*) AS n FROM tickagg.bar_indicators").fetchone()["n"] == 20


def test_runner_computes_indicators(conn, dsn):
    _setup(conn, sym="RUN", tfs=("1h",), n=500, seed=6)
    res = h.run_cli(dsn, "run", "--until-idle", "--max-windows", "120")
    assert res.returncode == 0, res.stderr
    _check(conn, "RUN", "1h")


def test_clickhouse_export_carries_indicators(conn, dsn, ch_url):
    _setup(conn, sym="CHI", tfs=("1h",), n=300, seed=8)
    queries.sync_export_tasks(conn, "prod", START)
    client = clickhouse.connect(ch_url, f"t_{uuid.uuid4().hex[:10]}")
    clickhouse.migrate(client)
    from runner import db

    def export() -> None:
        with db.make_pool(dsn, max_size=2) as pool:
            clickhouse.export_once(pool, client, "CHI", 1000)

    export()  # bars before their indicators: '{}'
    _drive_indicators(conn)
    export()
    _correct(conn, random.Random(1), "CHI", "1h")
    _drive_indicators(conn)
    export()
    ch = {
        r[0]: json.loads(r[1])
        for r in client.query(
            "SELECT timestamp, indicators FROM aggregates FINAL"
            " WHERE symbol = 'CHI' AND timeframe = '1h' AND is_deleted = 0"
        ).result_rows
    }
    pg = {r["ts_utc"]: r["indicators"] for r in _series(conn, "CHI", "1h")}
    assert len(ch) == len(pg) >= 299
    assert {k.replace(tzinfo=UTC): v for k, v in ch.items()} == pg
    rsi = client.query(
        "SELECT JSONExtractFloat(indicators, 'rsi') FROM aggregates FINAL"
        " WHERE symbol = 'CHI' AND timeframe = '1h' ORDER BY timestamp DESC LIMIT 1"
    ).result_rows[0][0]
    assert 0 <= rsi <= 100


def test_parameter_change_recomputes_the_series(conn):
    _setup(conn, sym="PAR", tfs=("1h",), n=400, seed=12)
    _drive_indicators(conn, max_bars=150)
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = '7,14,21,50,100'"
        " WHERE setting_key = 'indicator_sma_periods'"
    )
    conn.execute("UPDATE tickagg.data_agg_state SET next_run_at = now()")
    _drive_indicators(conn, max_bars=150)
    rows = _series(conn, "PAR", "1h")
    want = talib.SMA(np.array([r["close"] for r in rows], dtype=float), 100)
    assert all("sma_200" not in r["indicators"] for r in rows)
    for i, r in enumerate(rows):
        have = r["indicators"]["sma_100"]
        assert (have is None) if math.isnan(want[i]) else _rel(have, want[i]) < REL, i


def test_correction_committed_during_a_run_is_not_lost(conn, dsn):
    """Runner A computes the whole series (reading the old bars); a correction of
    a bar in the middle commits before A finishes. A's finish succeeds, and the
    queued rewind makes the task run again at once and recompute from there."""
    _setup(conn, sym="RACE", tfs=("1h",), n=600, seed=13)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE timeframe <> '1h'")
    (task,) = conn.execute(
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 10, 300)"
        " WHERE task_kind = 'indicators'"
    ).fetchall()
    middle = _series(conn, "RACE", "1h")[300]["ts_utc"]
    with conn.transaction():
        res = conn.execute(
            "SELECT tickagg.indicators_step('RACE', '1h', %s, 100000) AS r", (task["cursor_ts"],)
        ).fetchone()["r"]
        assert res["bars_computed"] == 600
        with h.connect(dsn) as other:
            other.execute(
                "UPDATE tickagg.derived_data_bars SET close = close * 1.02,"
                " high = greatest(high, close * 1.02), derivation_version = derivation_version + 1"
                " WHERE canonical_symbol = 'RACE' AND timeframe = '1h' AND ts_utc = %s",
                (middle,),
            )
            other.commit()
        h._finish(conn, task, res)
    assert conn.execute("SELECT count(*) AS n FROM tickagg.indicator_rewinds").fetchone()["n"] == 1
    assert _drive_indicators(conn) >= 1, "the task is due again at once"
    _check(conn, "RACE", "1h")


def test_a_correction_ahead_of_the_cursor_wakes_its_task_whenever_a_runner_claims(conn, dsn):
    """A bar after the cursor is corrected while the task is due but not running.
    Whatever a runner claims before the correction commits is run (such a run reads
    the old bar and moves the cursor past it); after the commit, the due tasks alone
    (nothing woken by hand) bring the series back to TA-Lib. Before, the claim could
    land between the correction's trigger and its commit: the run then left the task
    not due with the correction's rewind queued, stale until the next bar or the
    idle recheck (the chaos suite's restart attack, seeds 30 and 31)."""
    _setup(conn, sym="RACE", tfs=("1h",), n=600, seed=13)
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE timeframe <> '1h'")
    claim = (
        "SELECT * FROM tickagg.agg_get_due_tasks('prod', now(), 10, 300)"
        " WHERE task_kind = 'indicators'"
    )
    (task,) = conn.execute(claim).fetchall()
    assert h.indicators_run(conn, task, 300)["continue"], "due again at once"
    cursor = conn.execute(
        "SELECT last_agg_bar_ts_utc FROM tickagg.data_agg_state"
        " WHERE canonical_symbol = 'RACE' AND task_kind = 'indicators'"
    ).fetchone()["last_agg_bar_ts_utc"]
    target = _series(conn, "RACE", "1h")[400]["ts_utc"]
    assert target >= cursor
    with h.connect(dsn) as other:
        other.autocommit = False
        other.execute(
            "UPDATE tickagg.derived_data_bars SET close = close * 1.02,"
            " high = greatest(high, close * 1.02), derivation_version = derivation_version + 1"
            " WHERE canonical_symbol = 'RACE' AND timeframe = '1h' AND ts_utc = %s",
            (target,),
        )
        for t in conn.execute(claim).fetchall():
            h.indicators_run(conn, t, 100000)  # reads the old bar, cursor moves past it
        other.commit()
    assert _drive_indicators(conn) >= 1, "the correction left its task due"
    _check(conn, "RACE", "1h")


def _rewinds(conn, sym: str) -> list[dt.datetime]:
    rows = conn.execute(
        "SELECT from_ts FROM tickagg.indicator_rewinds WHERE canonical_symbol = %s ORDER BY 1",
        (sym,),
    ).fetchall()
    return [r["from_ts"] for r in rows]


def _bump_close(conn, sym: str, ts: dt.datetime, factor: float = 1.01) -> None:
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET close = close * %s,"
        " high = greatest(high, close * %s), derivation_version = derivation_version + 1"
        " WHERE canonical_symbol = %s AND timeframe = '1h' AND ts_utc = %s",
        (factor, factor, sym, ts),
    )


def test_a_disabled_series_keeps_one_pending_rewind_the_earliest(conn):
    """Corrections to the bars of a disabled indicators task queue one rewind, the
    earliest, not a row each (issue 18 item 1: the queue grew forever). Enabled
    again, the task recomputes from there and equals TA-Lib."""
    rng = _setup(conn, sym="OFF", tfs=("1h",), n=400, seed=21)
    _drive_indicators(conn)
    conn.execute("SELECT tickagg.agg_task_set_enabled('OFF', '1h', 'indicators', false)")
    series = [r["ts_utc"] for r in _series(conn, "OFF", "1h")]
    corrected = [series[rng.randrange(50, 400)] for _ in range(60)]
    for ts in corrected:
        _bump_close(conn, "OFF", ts, 1 + rng.gauss(0, 0.01))
    assert _rewinds(conn, "OFF") == [min(corrected)]
    # one statement over several bars, before every pending rewind: it replaces it
    conn.execute(
        "UPDATE tickagg.derived_data_bars SET volume = volume + 1"
        " WHERE canonical_symbol = 'OFF' AND timeframe = '1h' AND ts_utc = ANY(%s)",
        (series[20:30:3],),
    )
    assert _rewinds(conn, "OFF") == [series[20]]
    conn.execute("SELECT tickagg.agg_task_set_enabled('OFF', '1h', 'indicators', true)")
    assert _drive_indicators(conn, rng) >= 1
    assert _rewinds(conn, "OFF") == []
    _check(conn, "OFF", "1h")


def test_a_correction_holds_its_series_task_until_it_commits_then_wakes_it(conn, dsn):
    """A correction covered by a pending rewind queues nothing and holds that
    rewind until it commits. Its series' task cannot be claimed meanwhile (a run
    would read the bar as it was): a claim skips it without waiting for the
    correction, and the rewind stays queued. Once the correction commits, the task
    is due by itself (nothing woken by hand) and brings the series up to date."""
    _setup(conn, sym="HOLD", tfs=("1h",), n=400, seed=22)
    _drive_indicators(conn)
    series = [r["ts_utc"] for r in _series(conn, "HOLD", "1h")]
    _bump_close(conn, "HOLD", series[100])  # committed: the pending rewind
    with h.connect(dsn) as other:
        other.autocommit = False
        _bump_close(other, "HOLD", series[200], 1.03)  # covered, uncommitted
        assert _rewinds(conn, "HOLD") == [series[100]]
        assert _drive_indicators(conn) == 0, "claimed while the correction was uncommitted"
        assert _rewinds(conn, "HOLD") == [series[100]], "the held rewind is left queued"
        other.commit()
    assert _drive_indicators(conn) >= 1
    assert _rewinds(conn, "HOLD") == []
    _check(conn, "HOLD", "1h")
