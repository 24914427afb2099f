"""`tickagg chart`: candles with volume, and chosen indicators, of one symbol and
timeframe, drawn with matplotlib (the `chart` extra) into PNG, SVG or a
self-contained HTML page. The bars come through the same named query as
`tickagg bars` (runner.read)."""

from __future__ import annotations

import datetime as dt
import html
import io
from collections.abc import Sequence
from pathlib import Path

FORMATS = (".png", ".svg", ".html")
# indicators drawn on the price axis; every other one gets a panel of its own
ON_PRICE = ("sma_", "ema_", "bb_middle", "bb_upper", "bb_lower", "vwap")
# how far back a chart without --from reaches: about this many buckets
DEFAULT_BARS = 300
STEPS = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "30m": dt.timedelta(minutes=30),
    "1h": dt.timedelta(hours=1),
    "4h": dt.timedelta(hours=4),
    "1d": dt.timedelta(days=1),
    "1w": dt.timedelta(weeks=1),
}


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def default_start(timeframe: str, end: dt.datetime) -> dt.datetime:
    return end - DEFAULT_BARS * STEPS.get(timeframe, dt.timedelta(days=1))


def render(rows: list[dict], indicators: Sequence[str], title: str, output: Path) -> None:
    """Draw the bars (in bucket order) into output; its suffix picks the format."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartUnavailable('charts need matplotlib: pip install -e ".[chart]"') from None
    lower = [n for n in indicators if not n.startswith(ON_PRICE)]
    heights = [4, 1] + [1.2] * len(lower)
    fig, axes = plt.subplots(
        len(heights), 1, sharex=True, figsize=(13, 3 + 1.6 * len(heights)),
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    price, volume, panels = axes[0], axes[1], axes[2:]
    # one slot per bar: closed market time (nights, weekends) takes no room
    xs = list(range(len(rows)))
    up = [r["close"] >= r["open"] for r in rows]
    colors = ["#26a69a" if u else "#ef5350" for u in up]
    price.vlines(xs, [r["low"] for r in rows], [r["high"] for r in rows], colors=colors, lw=0.8)
    price.bar(
        xs,
        [abs(r["close"] - r["open"]) or 1e-12 for r in rows],
        bottom=[min(r["open"], r["close"]) for r in rows],
        color=colors,
        width=0.7,
    )
    for name in indicators:
        axis = price if name.startswith(ON_PRICE) else panels[lower.index(name)]
        axis.plot(xs, [r.get(name) for r in rows], lw=1.0, label=name)
        axis.legend(loc="upper left", fontsize=8)
    volume.bar(xs, [r["volume"] for r in rows], color=colors, width=0.7)
    volume.set_ylabel("volume")
    price.set_title(title)
    ticks = xs[:: max(1, len(xs) // 8)]
    axes[-1].set_xticks(ticks, [f"{rows[i]['bucket']:%Y-%m-%d %H:%M}" for i in ticks], fontsize=8)
    fig.tight_layout()
    suffix = output.suffix.lower()
    if suffix == ".html":
        svg = io.StringIO()
        fig.savefig(svg, format="svg")
        output.write_text(
            "<!doctype html><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title>\n{svg.getvalue()}\n",
            encoding="utf-8",
        )
    else:
        fig.savefig(output, format=suffix.lstrip("."), dpi=110)
    plt.close(fig)
