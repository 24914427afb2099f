"""Ticks under concurrency (issue 18 item 3), with real separate sessions:
producers writing the same symbols in opposite orders never deadlock; a producer
that creates a day's partition does not block readers of ticks; retention
running while an ingest writes into the oldest partition loses no tick."""

from __future__ import annotations

import datetime as dt
import threading

import helpers as h
import psycopg
import pytest
from test_ticks_retention import name, partitions

UTC = dt.UTC
SYMBOLS = [f"TL{i:02d}" for i in range(8)]


def set_retention(conn, length: str) -> None:
    conn.execute(
        "UPDATE tickagg.settings SET setting_value = %s WHERE setting_key = 'ticks_retention'",
        (length,),
    )


INGEST = "SELECT tickagg.ingest_ticks(%s::text[], %s::timestamptz[], p_last_price => %s::float8[], p_size => %s::float8[]) AS r"  # noqa: E501


def register(conn, start: dt.datetime) -> None:
    for sym in SYMBOLS:
        conn.execute(
            "SELECT tickagg.register_symbol(%s, 'crypto_24x7', p_source_kind => 'ticks')", (sym,)
        )
    h.sync(conn, start)


def test_producers_in_opposite_symbol_order_never_deadlock(dsn, conn):
    """Two producers send the same ticks of eight symbols (a feed re-sent through
    a second path), one in symbol order and one reversed, at the same moment, 40
    times: none fails, and each tick lands once. Unordered, each held the
    uniqueness check of its first symbols' ticks and waited for the other's."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register(conn, now - dt.timedelta(hours=1))
    errors: list[str] = []
    rounds = 40
    for r in range(rounds):
        at = now - dt.timedelta(minutes=50) + dt.timedelta(seconds=r)
        ticks = [(sym, at + dt.timedelta(milliseconds=k)) for sym in SYMBOLS for k in range(25)]
        gate = threading.Barrier(2)

        def produce(order: list[tuple[str, dt.datetime]], gate: threading.Barrier = gate) -> None:
            with psycopg.connect(dsn, autocommit=True) as c:
                gate.wait(timeout=30)
                try:
                    c.execute(
                        INGEST,
                        (
                            [s for s, _ in order],
                            [t for _, t in order],
                            [100.0] * len(order),
                            [1.0] * len(order),
                        ),
                    )
                except psycopg.Error as e:  # reported by the assertion below
                    errors.append(repr(e))

        producers = [
            threading.Thread(target=produce, args=(ticks,)),
            threading.Thread(target=produce, args=(ticks[::-1],)),
        ]
        for p in producers:
            p.start()
        for p in producers:
            p.join(timeout=120)
    assert errors == [], errors[:3]
    landed = conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"]
    assert landed == rounds * len(SYMBOLS) * 25


def test_file_producers_in_opposite_symbol_order_never_deadlock(dsn, conn, tmp_path):
    """The same on the file path (`ingest ticks`, ingest_staged_ticks): two files
    with the same ticks in opposite orders, ingested at once, 8 times; both
    succeed, each tick lands once (a deadlock of their plain inserts is undone and
    the chunk lands again in key order)."""
    from runner import db, ingest_ticks

    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register(conn, now - dt.timedelta(hours=1))
    errors: list[str] = []
    rounds = 8
    header = "canonical_symbol,ts_utc,bid,ask,last,size\n"
    for r in range(rounds):
        at = now - dt.timedelta(minutes=50) + dt.timedelta(seconds=r)
        lines = [
            f"{sym},{(at + dt.timedelta(milliseconds=k)).isoformat()},,,100,1\n"
            for sym in SYMBOLS
            for k in range(25)
        ]
        files = []
        for name_, order in (("forward", lines), ("reversed", lines[::-1])):
            f = tmp_path / f"{name_}{r}.csv"
            f.write_text(header + "".join(order))
            files.append(f)
        gate = threading.Barrier(2)

        def produce(path, gate: threading.Barrier = gate) -> None:
            with db.make_pool(dsn, max_size=1) as pool:
                gate.wait(timeout=30)
                try:
                    ingest_ticks.ingest_ticks_file(pool, str(path))
                except Exception as e:  # reported by the assertion below
                    errors.append(repr(e))

        producers = [threading.Thread(target=produce, args=(f,)) for f in files]
        for p in producers:
            p.start()
        for p in producers:
            p.join(timeout=120)
    assert errors == [], errors[:3]
    landed = conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"]
    assert landed == rounds * len(SYMBOLS) * 25


def test_a_producer_creating_a_partition_blocks_no_reader(dsn, conn):
    """A producer whose ticks need a new day's partition creates it inside its own
    transaction, which stays open here; readers of ticks and other producers go on
    meanwhile (CREATE TABLE ... PARTITION OF locked all of ticks until commit)."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register(conn, now - dt.timedelta(days=3))
    today = now.astimezone(UTC).date()
    conn.execute(
        "SELECT tickagg.ticks_ensure_partitions(%s, %s)",
        (now - dt.timedelta(days=2), now - dt.timedelta(days=1)),
    )
    assert name(today) not in partitions(conn)
    with psycopg.connect(dsn, autocommit=False) as producer:
        producer.execute(INGEST, (["TL00"], [now - dt.timedelta(seconds=1)], [10.0], [1.0]))
        outcome: dict = {}

        def read_and_write() -> None:
            try:
                with psycopg.connect(dsn, autocommit=True) as other:
                    outcome["read"] = other.execute("SELECT count(*) FROM tickagg.ticks").fetchone()
                    outcome["written"] = other.execute(
                        INGEST, (["TL01"], [now - dt.timedelta(days=1)], [10.0], [1.0])
                    ).fetchone()[0]["rows_landed"]
            except psycopg.Error as e:  # reported by the assertion below
                outcome["error"] = repr(e)

        other = threading.Thread(target=read_and_write)
        other.start()
        # no time bound: blocked, it would wait until the producer commits, after the join
        other.join(timeout=120)
        blocked = other.is_alive()
        producer.commit()
        other.join(timeout=120)
    assert not blocked, "a reader waited for the producer that created a partition"
    assert outcome == {"read": (0,), "written": 1}, outcome
    assert name(today) in partitions(conn)
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 2


def test_retention_never_drops_a_partition_an_ingest_is_writing(dsn, conn):
    """An ingest has found the oldest day's partition (ticks_ensure_partitions,
    in its transaction) and not yet inserted; retention, whose window has moved
    past that day meanwhile (as at UTC midnight; here a shorter setting), runs
    now. It leaves the partition to a later run (busy), and the ingest lands its
    tick. Retention used to drop it, and the ingest failed: no partition for the row."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register(conn, now - dt.timedelta(days=8))
    conn.execute("UPDATE tickagg.data_agg_state SET enabled = false WHERE task_kind = 'ticks_1m'")
    set_retention(conn, "8 days")
    old = now - dt.timedelta(days=6, hours=12)
    conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (old,))
    oldest = name(old.astimezone(UTC).date())
    with psycopg.connect(dsn, autocommit=False) as producer:
        producer.execute("SELECT tickagg.ticks_ensure_partitions(%s, %s)", (old, old))
        set_retention(conn, "1 day")
        outcome: dict = {}

        def retention() -> None:
            with psycopg.connect(dsn, autocommit=True) as r:
                outcome["pid"] = r.info.backend_pid
                outcome["r"] = r.execute("SELECT tickagg.ticks_retention_run()").fetchone()[0]

        runner = threading.Thread(target=retention)
        runner.start()
        # it never waits for the producer: waiting, it held a lock on all of ticks
        # (DROP locks the parent first) and stalled every reader meanwhile
        waited = False
        while runner.is_alive() and not waited:
            pid = outcome.get("pid")
            waited = (
                pid is not None
                and producer.info.backend_pid
                in conn.execute("SELECT pg_blocking_pids(%s) AS p", (pid,)).fetchone()["p"]
            )
        runner.join(timeout=60)
        assert not waited, "retention waited for the producer's partition"
        res = outcome["r"]
        assert oldest not in res["partitions_dropped"], res
        assert oldest in res["busy"], res
        set_retention(conn, "8 days")
        landed = producer.execute(INGEST, (["TL00"], [old], [10.0], [1.0])).fetchone()[0]
        producer.commit()
    assert landed["rows_landed"] == 1, landed
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ticks").fetchone()["n"] == 1


def test_the_runner_role_cannot_move_the_partitions_clock(conn, role_dsn):
    """As the runner role: retention runs by the database clock only (a far-future
    p_now dropped young partitions and made ones for 2100), and making partitions
    for chosen days is not the runner's to call (issue 23 item 11)."""
    now = conn.execute("SELECT now() AS n").fetchone()["n"]
    register(conn, now - dt.timedelta(days=3))
    conn.execute("SELECT tickagg.ticks_ensure_partitions(%s, now())", (now - dt.timedelta(days=3),))
    before = partitions(conn)
    with psycopg.connect(role_dsn(), autocommit=True) as runner:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            runner.execute("SELECT tickagg.ticks_retention_run(p_now => '2100-01-01')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            runner.execute("SELECT tickagg.ticks_ensure_partitions('2030-01-01', '2030-03-01')")
        res = runner.execute("SELECT tickagg.ticks_retention_run()").fetchone()[0]
    assert res["partitions_dropped"] == [], res
    assert set(before) <= set(partitions(conn))
    assert not [p for p in partitions(conn) if p >= "ticks_p2030"]
