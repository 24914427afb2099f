"""Logging: text or one-JSON-object-per-line, with task context (run id,
symbol, timeframe, kind) taken from context variables, passwords masked."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys

from .db import mask_dsn

_EMPTY: dict = {}
_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar(
    "tickagg_log_context", default=_EMPTY
)  # noqa: B039 - never mutated

CONTEXT_KEYS = ("run_id", "worker", "symbol", "timeframe", "kind")


@contextlib.contextmanager
def log_context(**fields):
    """Add fields to every log line emitted inside the block (this thread)."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield merged
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.tk_context = _CONTEXT.get()
        return True


_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "tk_context",
}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ctx = getattr(record, "tk_context", {}) or {}
        base = super().format(record)
        parts = [f"{k}={ctx[k]}" for k in CONTEXT_KEYS if k in ctx]
        extra = {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}
        parts += [f"{k}={v}" for k, v in extra.items()]
        if parts:
            head, sep, rest = base.partition("\n")
            base = head + " [" + " ".join(parts) + "]" + sep + rest
        return mask_dsn(base)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_dsn(record.getMessage()),
        }
        out.update(getattr(record, "tk_context", {}) or {})
        for k, v in vars(record).items():
            if k not in _STD_ATTRS:
                out[k] = v
        if record.exc_info:
            out["exc"] = mask_dsn(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_tickagg", False):
            root.removeHandler(h)
    handler._tickagg = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # psycopg's pool is chatty at INFO
    for noisy in ("psycopg", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # and at WARNING logs every reconnection attempt: during an outage the runner
    # reports instead, once when it goes and every minute while it lasts
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))
