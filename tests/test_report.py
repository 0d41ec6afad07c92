"""The report renders every stage's metrics and names a missing one."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.report.stage import run_report
from starbuild.report.summary import flatten, render
from tests.conftest import METRICS_STAGES


def test_flatten_sorts_and_dots_nested_keys() -> None:
    assert flatten({"b": 1, "a": {"y": 2, "x": [1, 2]}}) == [("a.x", [1, 2]), ("a.y", 2), ("b", 1)]


def test_render_has_a_section_per_stage_and_origins_table() -> None:
    metrics = {stage: {"files": 10, "ratio": 0.5} for stage in METRICS_STAGES}
    metrics["pull"]["origins"] = {
        "pypi/x": {"files": 3, "bytes": 1234, "files_by_license_type": {"permissive": 2, "no_license": 1},
                   "declared_licenses": [], "detected_licenses": ["MIT"], "directory_swhid": "swh:1:dir:" + "0" * 40}
    }
    text = render(metrics)
    for stage in METRICS_STAGES:
        assert f"## {stage}\n" in text
    assert "| pypi/x | 3 | 1,234 | no_license 1, permissive 2 | MIT |" in text
    assert "| files | 10 |" in text and "| ratio | 0.5 |" in text


def test_run_report_writes_summary_and_fails_clearly_without_metrics(
    make_context: Callable[..., StageContext],
) -> None:
    ctx = make_context("report")
    with pytest.raises(StageError, match="metrics/pull.json does not exist"):
        run_report(ctx)
    for stage in METRICS_STAGES:
        path = ctx.root / layout.metrics_file(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"count": 1}))
    run_report(ctx)
    assert "## eval" in (ctx.root / layout.REPORTS / "summary.md").read_text()
    (ctx.root / layout.metrics_file("train")).write_text('{"count": ')
    with pytest.raises(StageError, match=r"^metrics/train.json is not readable \(JSONDecodeError: .*\); restore it "
                                         r"with `git checkout -- metrics/train.json` or rebuild it with "
                                         r"`dvc repro -f -s train`$"):
        run_report(ctx)
