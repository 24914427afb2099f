"""docs/grafana: every PostgreSQL panel's SQL runs as the runner role against a
migrated database with data and returns the columns its panel plots; every
Prometheus expression names only metrics the runner exports; the provisioning
files point at the dashboard's datasources."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import helpers as h
import yaml
from test_alerts import NOT_METRICS, _exported_names
from test_oracle import SYMBOLS, build, load

from runner.metrics import Metrics

GRAFANA = Path(__file__).resolve().parents[1] / "docs" / "grafana"
DASHBOARD = json.loads((GRAFANA / "tickagg.json").read_text())
# the columns each PostgreSQL panel plots, by panel title
EXPECTED_COLUMNS = {
    "Candles: $symbol $timeframe": ["time", "open", "high", "low", "close", "volume"],
    "Tasks per kind and timeframe": [
        "task_kind", "timeframe", "tasks", "enabled", "running", "failing", "hard_failed",
        "max_lag_seconds", "oldest_cursor", "next_run_at",
    ],
    "Ingest rows and rejects": ["time", "landed", "unchanged", "rejected"],
    "Open gaps per symbol": [
        "canonical_symbol", "open_gaps", "missing_minutes", "oldest_gap_start",
    ],
}  # fmt: skip
FROM, TO = "'2025-03-01T00:00:00Z'", "'2100-01-01T00:00:00Z'"


def targets(kind: str):
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["uid"] == f"tickagg-{kind}":
                yield panel, target


def grafana_sql(text: str, symbol: str) -> str:
    """Grafana's interpolation of the macros and variables the panels use."""
    text = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {FROM} AND {TO}", text)
    return (
        text.replace("$__timeFrom()", FROM)
        .replace("$__timeTo()", TO)
        .replace("$symbol", symbol)
        .replace("$timeframe", "5m")
    )


def test_every_sql_panel_runs_as_the_runner_and_returns_its_columns(dsn, conn, role_dsn, tmp_path):
    agg_start, data = build(
        31, ranges=((dt.date(2025, 3, 6), dt.date(2025, 3, 9)),), symbols=SYMBOLS[2:3]
    )
    load(conn, agg_start, data)
    symbol = next(iter(data))
    bars = tmp_path / "bars.csv"
    bars.write_text(
        "canonical_symbol,ts_utc,open,high,low,close,volume\n"
        f"{symbol},2025-03-09T10:00:00Z,1,2,0.5,1.5,10\n"
        f"{symbol},2025-03-09T10:01:00Z,1,0.5,2,1.5,10\n"  # high < low: rejected
    )
    assert h.run_cli(dsn, "ingest", "bars", str(bars)).returncode == 3
    h.drive(dsn)

    seen = set()
    with h.connect(role_dsn()) as runner:
        variable = DASHBOARD["templating"]["list"][0]
        assert symbol in [r["canonical_symbol"] for r in runner.execute(variable["query"])]
        for panel, target in targets("postgres"):
            rows = runner.execute(grafana_sql(target["rawSql"], symbol)).fetchall()
            columns = [
                c.name for c in runner.execute(grafana_sql(target["rawSql"], symbol)).description
            ]
            assert columns == EXPECTED_COLUMNS[panel["title"]], panel["title"]
            if panel["title"] != "Open gaps per symbol":  # gaps: only if the data has any
                assert rows, f"{panel['title']}: no rows on a database with data"
            seen.add(panel["title"])
    assert seen == set(EXPECTED_COLUMNS)


def test_every_prometheus_expression_names_exported_metrics():
    # a labelled counter has no samples before its first increment; Prometheus
    # shows it as <name>_total
    counters = {f.name + "_total" for f in Metrics().registry.collect() if f.type == "counter"}
    exported = _exported_names() | counters
    exprs = [t["expr"] for _, t in targets("prometheus")]
    assert len(exprs) >= 4
    for expr in exprs:
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\bby\s*\([^)]*\)|\[[^\]]*\]', "", expr)
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - NOT_METRICS - {"rate"}
        assert names and names <= exported, (expr, names - exported)


def test_provisioning_points_at_the_dashboards_datasources():
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yml").read_text())
    uids = {s["uid"]: s["type"] for s in sources["datasources"]}
    used = {
        (t["datasource"]["uid"], t["datasource"]["type"])
        for p in DASHBOARD["panels"]
        for t in p["targets"]
    }
    assert used <= set(uids.items())
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
    assert {p["id"] for p in DASHBOARD["panels"]} == set(range(1, len(DASHBOARD["panels"]) + 1))
