"""What a file ingest shows on a terminal while it runs: rows done, rows/s and
rejects so far, updated after every chunk. Nothing without a terminal or with
--log-format json (the log lines are then the record)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def ingest_progress(label: str, quiet: bool) -> Iterator[Callable[[dict], None] | None]:
    """A callback for the ingest's running totals (rows_total, rows_rejected,
    seconds), or None when nothing is shown."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[rows]:>12,} rows  {task.fields[rate]:>9,.0f} rows/s"),
        TextColumn("{task.fields[rejected]:,} rejected"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=None, rows=0, rate=0.0, rejected=0)

        def show(totals: dict) -> None:
            progress.update(
                task,
                rows=totals["rows_total"],
                rate=totals["rows_total"] / max(totals["seconds"], 1e-6),
                rejected=totals["rows_rejected"],
            )

        yield show
