"""Where every stage reads and writes, relative to the repository root (dvc.yaml mirrors this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml

RAW = Path("data/raw")
FILTERED = Path("data/filtered")
# A sample of the files each filter rule dropped, with the rule's name.
FILTER_REJECTS = Path("data/filter_rejects")
NOTEBOOKS = Path("data/notebooks")
ISSUES = Path("data/issues")
PULL_REQUESTS = Path("data/pull_requests")
DEDUP = Path("data/dedup")
DEDUP_CLUSTERS = Path("data/dedup_clusters")
CLEAN = Path("data/clean")
# The files the clean stage removed as benchmark contamination, one row per (file, benchmark, task).
DECONTAMINATED = Path("data/decontaminated")
# The non-code sources after the clean_sources stage (near dedup, malware, decontamination, PII): one table each.
CLEAN_NOTEBOOKS = Path("data/sources/notebooks")
CLEAN_ISSUES = Path("data/sources/issues")
CLEAN_PULL_REQUESTS = Path("data/sources/pull_requests")
DOCS = Path("data/docs")
# The splits of data/docs/ and data/tokens/: repositories are held out for validation whole.
TRAIN = "train"
VAL = "val"
SPLITS = (TRAIN, VAL)
TOKENS = Path("data/tokens")
TOKENIZER = Path("models/tokenizer")
# The HF `tokenizers` file, in models/tokenizer/ and in the exported models/hf/.
TOKENIZER_FILE = "tokenizer.json"
CHECKPOINTS = Path("models/checkpoints")
HF_MODEL = Path("models/hf")
METRICS = Path("metrics")
# The eval stage's result for every completion and infilled line, beside metrics/eval.json.
EVAL_TASKS = Path("metrics/eval_tasks.jsonl")
PLOTS = Path("plots")
REPORT_SUMMARY = Path("reports/summary.md")
DATASET_CARD = Path("reports/dataset_card.md")
# What depends on the machine (training throughput) or the checkout (the report page's commit): neither a
# DVC out nor in git.
LOGS = Path("logs")
REPORT_PAGE = Path("reports/index.html")

# The DAG itself (stage names, order, outs) lives in dvc.yaml alone; these read it.
DVC_YAML = "dvc.yaml"


def dag_stages(root: Path) -> dict[str, dict[str, Any]]:
    """The stages of `root`/dvc.yaml in file order (the order they run in), each with its spec."""
    return yaml.safe_load((Path(root) / DVC_YAML).read_text(encoding="utf-8"))["stages"]


def declared(spec: dict[str, Any], kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """What a stage declares under `kind` (outs, metrics, plots or deps): each path with its flags."""
    entries = []
    for entry in spec.get(kind, []):
        path, flags = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        entries.append((Path(path), flags or {}))
    return entries


def declared_paths(spec: dict[str, Any], kind: str) -> list[Path]:
    """The paths a stage declares under `kind`, flags dropped."""
    return [path for path, _ in declared(spec, kind)]


class Producer(NamedTuple):
    """Which stage writes a path, the declared out holding it, and whether DVC caches that out."""

    stage: str
    out: Path
    cached: bool


def producing_out(path: Path, root: Path) -> Producer | None:
    """The stage that writes `path` and the declared out it lies in, per dvc.yaml (if there is one)."""
    if not (Path(root) / DVC_YAML).is_file():
        return None
    for stage, spec in dag_stages(root).items():
        for out, flags in declared(spec, "outs") + declared(spec, "metrics") + declared(spec, "plots"):
            if out == Path(path) or out in Path(path).parents:
                return Producer(stage, out, flags.get("cache", True))
    return None


def producer_of(path: Path, root: Path) -> str | None:
    """The stage that writes `path` or the directory it lies in, according to dvc.yaml (if there is one)."""
    found = producing_out(path, root)
    return found.stage if found else None


def metrics_file(stage: str) -> Path:
    """The metrics JSON a stage writes (declared `cache: false` in dvc.yaml)."""
    return METRICS / f"{stage}.json"
