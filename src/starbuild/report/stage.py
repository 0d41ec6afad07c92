"""The report stage: the summary, the dataset card, the report's plot tables and the page, from every stage's metrics.

`reports/summary.md`, `reports/dataset_card.md` and plots/report_*.csv are DVC outs: made of metrics and
params only, they rebuild byte for byte. `reports/index.html` also shows this checkout's commit and this
machine's training throughput, so it is written beside the outs (like logs/), not cached or locked.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from starbuild.core import layout
from starbuild.core.shards import atomic_file
from starbuild.core.stage import StageContext
from starbuild.report.card import render_card
from starbuild.report.lineage import changed_params, git_commit, locked_outs
from starbuild.report.page import PageInputs, bits_per_byte_by_language, mix, render_page
from starbuild.report.summary import render

log = logging.getLogger(__name__)

SUMMARY, CARD, PAGE = layout.REPORT_SUMMARY, layout.DATASET_CARD, layout.REPORT_PAGE
# The curves the page draws: (name, file, value column); the train stage writes them (throughput beside its outs).
CURVES = (("train_loss", layout.PLOTS / "train_loss.csv", "loss"), ("val_loss", layout.PLOTS / "val_loss.csv", "loss"),
          ("train_lr", layout.PLOTS / "train_lr.csv", "lr"),
          ("tokens_per_s", layout.LOGS / "train_throughput.csv", "tokens_per_s"),
          ("mfu", layout.LOGS / "train_throughput.csv", "mfu"))
# The report's own plot tables and their columns, drawn by `dvc plots show` / `dvc plots diff` (dvc.yaml).
PLOT_COLUMNS = {
    "languages": ("language", "pulled", "final"),
    "licenses": ("license_type", "pulled", "final"),
    "dedup_clusters": ("reason", "size", "clusters"),
    "pii": ("type", "redactions"),
    "decontamination": ("benchmark", "files"),
    "bits_per_byte": ("language", "bits_per_byte"),
}
PLOT_TABLES = {name: layout.PLOTS / f"report_{name}.csv" for name in PLOT_COLUMNS}


def metrics_deps(root: Path, stage: str) -> list[Path]:
    """The metrics files `stage` lists as deps in dvc.yaml, in their order (DVC reruns it when they change)."""
    deps = layout.declared_paths(layout.dag_stages(root)[stage], "deps")
    return [dep for dep in deps if dep.parent == layout.METRICS]


def run_report(ctx: StageContext) -> None:
    """Read every metrics/<stage>.json the report depends on; write the summary, the card, the plots and the page."""
    metrics = {}
    for rel in metrics_deps(ctx.root, ctx.name):
        with ctx.reading(rel) as path:
            metrics[rel.stem] = json.loads(path.read_text(encoding="utf-8"))
    params = OmegaConf.to_container(ctx.cfg, resolve=True)
    _write(ctx.output(SUMMARY), render(metrics))
    _write(ctx.output(CARD), render_card(metrics, params))
    for name, rows in plot_tables(metrics).items():
        _write_csv(ctx.output(PLOT_TABLES[name]), PLOT_COLUMNS[name], rows)
    page = PageInputs(metrics=metrics, curves=read_curves(ctx.root), commit=git_commit(ctx.root),
                      outs=locked_outs(ctx.root), changed_params=changed_params(ctx.cfg, ctx.root),
                      rule_order=list(params.get("filter", {}).get("rules", {})))
    _write(ctx.output(PAGE), render_page(page))
    log.info("wrote %s, %s and the report page %s", ctx.output(SUMMARY), ctx.output(CARD), ctx.output(PAGE))


def plot_tables(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each report plot table (the same numbers the page draws)."""
    pull, dedup, clean, evaluation = (metrics.get(k, {}) for k in ("pull", "dedup", "clean", "eval"))

    def mix_rows(before: Mapping[str, int], after: Mapping[str, Mapping[str, int]], key: str) -> list[dict[str, Any]]:
        return [{key: name, "pulled": pulled, "final": final} for name, pulled, final in mix(before, after)]

    return {
        "languages": mix_rows(pull.get("languages", {}), clean.get("languages", {}), "language"),
        "licenses": mix_rows(pull.get("files_by_license_type", {}), clean.get("license_types", {}), "license_type"),
        "dedup_clusters": [{"reason": reason, "size": int(size), "clusters": count}
                           for reason, sizes in dedup.get("cluster_sizes", {}).items()
                           for size, count in sorted(sizes.items(), key=lambda kv: int(kv[0]))],
        "pii": [{"type": k, "redactions": v} for k, v in sorted(clean.get("pii", {}).items())],
        "decontamination": [{"benchmark": k, "files": v} for k, v in sorted(clean.get("decontaminated", {}).items())],
        "bits_per_byte": [{"language": language, "bits_per_byte": v}
                          for language, v in bits_per_byte_by_language(evaluation)],
    }


def read_curves(root: Path) -> dict[str, list[tuple[float, float]]]:
    """Each curve's (step, value) points from the train stage's CSVs; a missing file or column is an empty curve."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, rel, column in CURVES:
        path = root / rel
        points: list[tuple[float, float]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                points = [(float(row["step"]), float(row[column])) for row in csv.DictReader(handle)
                          if row.get(column) not in (None, "")]
        curves[name] = points
    return curves


def _write(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
