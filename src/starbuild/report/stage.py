"""The report stage: `reports/summary.md` from every stage's metrics."""

from __future__ import annotations

import json
import logging

from starbuild.core import layout
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext
from starbuild.report.summary import STAGES, render

log = logging.getLogger(__name__)


def run_report(ctx: StageContext) -> None:
    """Read metrics/<stage>.json for every stage and write the Markdown summary."""
    metrics = {
        stage: json.loads(ctx.input(layout.metrics_file(stage)).read_text(encoding="utf-8"))
        for stage in STAGES
    }
    with atomic_output(ctx.output(layout.REPORTS)) as tmp:
        (tmp / "summary.md").write_text(render(metrics), encoding="utf-8")
    log.info("wrote %s", layout.REPORTS / "summary.md")
