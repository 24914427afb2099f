"""tickagg: SQL-first OHLCV aggregation engine for PostgreSQL."""

__version__ = "0.1.0"
