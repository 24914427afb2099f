"""Map psycopg errors to tickagg exceptions by SQLSTATE.

Use ``wrap_exceptions()`` as a context manager or decorator around any code
that talks to PostgreSQL; callers then only deal with the classes below.
"""

from __future__ import annotations

import contextlib

import psycopg
import psycopg_pool


class TickaggError(Exception):
    """Base class for every error raised by the runner."""


class InputFormatError(TickaggError):
    """A file given to the CLI cannot be read (missing columns, bad format)."""


class UnknownTaskKind(TickaggError):
    """The runner has no handler for a claimed task's kind."""


class TickaggDatabaseError(TickaggError):
    """An error raised by PostgreSQL; keeps sqlstate, message and hint."""

    def __init__(
        self,
        message: str,
        sqlstate: str | None = None,
        hint: str | None = None,
        detail: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        text = self.message
        if self.sqlstate:
            text = f"[{self.sqlstate}] {text}"
        if self.detail:
            text += f" (detail: {self.detail})"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class LeaseLost(TickaggDatabaseError):
    """TK001: the claim token no longer owns the task (lease taken over)."""


class UnknownSymbol(TickaggDatabaseError):
    """TK002."""


class UnknownTimeframeOrCalendar(TickaggDatabaseError):
    """TK003."""


class InvalidArgument(TickaggDatabaseError):
    """TK004."""


class HierarchyDoesNotNest(TickaggDatabaseError):
    """TK005."""


class TransientDatabaseError(TickaggDatabaseError):
    """Connection loss, serialization failure, deadlock, resource shortage,
    operator intervention, statement timeout: worth retrying later."""


class DatabaseUnavailable(TransientDatabaseError):
    """The server cannot be reached or is going away (connection refused or lost,
    shutting down or starting up, no pooled connection in time): an outage, waited
    out as a whole rather than retried task by task."""


_BY_SQLSTATE: dict[str, type[TickaggDatabaseError]] = {
    "TK001": LeaseLost,
    "TK002": UnknownSymbol,
    "TK003": UnknownTimeframeOrCalendar,
    "TK004": InvalidArgument,
    "TK005": HierarchyDoesNotNest,
    "57014": TransientDatabaseError,  # query_canceled (statement_timeout)
}
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
# admin_shutdown, crash_shutdown, cannot_connect_now (starting up / shutting down)
_UNAVAILABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def translate(exc: BaseException) -> TickaggDatabaseError:
    """Return the tickagg exception for a psycopg / pool exception."""
    if isinstance(exc, TickaggDatabaseError):
        return exc
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return DatabaseUnavailable(f"connection pool: {exc}", None)
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc)).strip()
    hint = getattr(diag, "message_hint", None)
    detail = getattr(diag, "message_detail", None)
    cls = _BY_SQLSTATE.get(sqlstate or "")
    if cls is None:
        if sqlstate in _UNAVAILABLE_SQLSTATES or (sqlstate or "")[:2] == "08":
            cls = DatabaseUnavailable
        elif sqlstate and sqlstate[:2] in _TRANSIENT_CLASSES:
            cls = TransientDatabaseError
        elif sqlstate is None and isinstance(
            exc, (psycopg.OperationalError, psycopg.InterfaceError)
        ):
            # connection refused / closed: no SQLSTATE at all
            cls = DatabaseUnavailable
        else:
            cls = TickaggDatabaseError
    return cls(message, sqlstate, hint, detail)


class wrap_exceptions(contextlib.ContextDecorator):
    """Context manager / decorator: re-raise psycopg errors as tickagg ones."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, (psycopg.Error, psycopg_pool.PoolTimeout)):
            raise translate(exc) from exc
        return False
