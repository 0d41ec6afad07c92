"""The report stage: `reports/summary.md` from every stage's metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from starbuild.core import layout
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext
from starbuild.report.summary import render

log = logging.getLogger(__name__)


def metrics_deps(root: Path, stage: str) -> list[Path]:
    """The metrics files `stage` lists as deps in dvc.yaml, in their order (DVC reruns it when they change)."""
    deps = layout.declared_paths(layout.dag_stages(root)[stage], "deps")
    return [dep for dep in deps if dep.parent == layout.METRICS]


def run_report(ctx: StageContext) -> None:
    """Read every metrics/<stage>.json the report depends on and write the Markdown summary."""
    metrics = {}
    for rel in metrics_deps(ctx.root, ctx.name):
        with ctx.reading(rel) as path:
            metrics[rel.stem] = json.loads(path.read_text(encoding="utf-8"))
    with atomic_output(ctx.output(layout.REPORTS)) as tmp:
        (tmp / "summary.md").write_text(render(metrics), encoding="utf-8")
    log.info("wrote %s", ctx.output(layout.REPORTS) / "summary.md")
