"""docs/alerts.yml parses, names only metrics the runner exports, and passes
promtool when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.metrics import Metrics

ALERTS = Path(__file__).resolve().parents[1] / "docs" / "alerts.yml"
# Prometheus' own series and functions an expression may use besides our metrics
NOT_METRICS = {"up", "max", "min", "by", "time", "sum", "avg", "job", "without", "on"}


def _exported_names() -> set[str]:
    names = set()
    for fam in Metrics().registry.collect():
        names.update(s.name for s in fam.samples)
        names.add(fam.name)
    return names


def test_alert_rules_name_exported_metrics():
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "TickaggLagHigh",
        "TickaggTaskFailing",
        "TickaggTaskHardFailed",
        "TickaggOldGap",
        "TickaggCoverage24hLow",
        "TickaggCoverage7dLow",
    }
    exported = _exported_names()
    for r in rules:
        # drop label matchers, strings and by (...) groupings
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\bby\s*\([^)]*\)', "", r["expr"])
        idents = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - NOT_METRICS
        assert idents or r["expr"].startswith("up{"), r
        assert idents <= exported, (r["alert"], idents - exported)
    thresholds = {r["alert"]: r["expr"] for r in rules}
    assert thresholds["TickaggLagHigh"].endswith("> 300")
    assert thresholds["TickaggTaskFailing"].endswith(">= 3")
    assert thresholds["TickaggOldGap"].endswith("> 86400")
    assert thresholds["TickaggCoverage24hLow"].endswith("< 99")
    assert thresholds["TickaggCoverage7dLow"].endswith("< 98")


def test_promtool_check_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed; the rules are only parsed with yaml")
    out = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
