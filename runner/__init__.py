"""tickagg: SQL-first OHLCV aggregation engine for PostgreSQL."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # read_bars pulls in pyarrow; the CLI should not pay for that at every start
    if name == "read_bars":
        from .read import read_bars

        return read_bars
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
