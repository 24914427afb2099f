"""ingest_rejects keeps no foreign key to ingest_batches (0021): the batch row is
locked once per chunk instead of once per rejected row. What the key gave must
still hold: a batch's rejects go with it (DELETE, TRUNCATE), a batch deleted
while a chunk of it is being landed waits for that chunk and then takes its
rejects too (no orphans), and a chunk naming a batch that is gone fails."""

from __future__ import annotations

import threading

import pytest
from helpers import connect, register, wait_until_blocked

from runner import queries
from runner.errors import InvalidArgument

BAD_ROWS = "X0,2024-01-01 00:00:00,1,1,1,1,1\nR0,2024-01-01 00:01:00,2,1,3,2,1\n"


def land(conn, batch_id: int | None, text: str = BAD_ROWS, line_offset: int = 1) -> dict:
    """One chunk through the real path, in the caller's open transaction."""
    conn.execute(queries.CREATE_BARS_STAGE)
    with conn.cursor().copy(
        queries.copy_bars_chunk_sql(
            ["canonical_symbol", "ts_utc", "open", "high", "low", "close", "volume"]
        )
    ) as cp:
        cp.write(text.encode())
    return queries.ingest_staged_bars(conn, "f.csv", None, batch_id, line_offset)


def rejects_by_batch(conn) -> dict:
    return {
        r["batch_id"]: r["n"]
        for r in conn.execute(
            "SELECT batch_id, count(*) AS n FROM tickagg.ingest_rejects GROUP BY batch_id"
        )
    }


@pytest.fixture
def symbol(conn) -> str:
    register(conn, "R0", "crypto_24x7")
    return "R0"


def test_deleting_or_truncating_batches_deletes_their_rejects(conn, symbol):
    with conn.transaction():
        first = land(conn, None)["batch_id"]
    with conn.transaction():
        second = land(conn, None)["batch_id"]
    with conn.transaction():
        assert land(conn, second, line_offset=3)["rows_rejected"] == 2
    assert rejects_by_batch(conn) == {first: 2, second: 4}

    conn.execute("DELETE FROM tickagg.ingest_batches WHERE batch_id = %s", (first,))
    assert rejects_by_batch(conn) == {second: 4}

    conn.execute("TRUNCATE tickagg.ingest_batches CASCADE")
    assert rejects_by_batch(conn) == {}


def test_a_batch_deleted_during_a_chunk_waits_and_leaves_no_orphan(dsn, conn, symbol):
    with conn.transaction():
        batch = land(conn, None)["batch_id"]
    with connect(dsn) as chunk_session, connect(dsn) as deleter:
        chunk_tx = chunk_session.transaction()
        chunk_tx.__enter__()
        assert land(chunk_session, batch, line_offset=3)["rows_rejected"] == 2

        done = threading.Event()

        def delete_batch():
            deleter.execute("DELETE FROM tickagg.ingest_batches WHERE batch_id = %s", (batch,))
            done.set()

        worker = threading.Thread(target=delete_batch)
        worker.start()
        wait_until_blocked(conn, deleter.info.backend_pid, chunk_session.info.backend_pid)
        assert not done.is_set()
        chunk_tx.__exit__(None, None, None)  # the chunk commits; the delete goes on
        worker.join(30)
        assert done.is_set()
    assert rejects_by_batch(conn) == {}
    assert conn.execute("SELECT count(*) AS n FROM tickagg.ingest_batches").fetchone()["n"] == 0

    with pytest.raises(InvalidArgument, match="no ingest batch"), conn.transaction():
        land(conn, batch)
