"""The `issues` stage: GitHub issues from GHArchive event files, rendered as StarCoder2 did, in data/issues/.

Every conversation of the configured event files whose repository is not opted out is rendered
(render.py); what the reader skipped, the opted-out repositories and each drop reason are counted in
metrics/issues.json. The conversations of the configured files are held in memory while they are
grouped by issue: memory grows with the event files given (a known limit at GHArchive's scale).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.issues.events import read_events
from starbuild.issues.render import REASONS, Dropped, render_issue
from starbuild.swh.opt_out import opted_out, read_opt_out

log = logging.getLogger(__name__)

# GHArchive's hourly files: `YYYY-MM-DD-H.json.gz`.
EVENT_FILES = "*.json.gz"


@dataclass
class IssuesConfig:
    """The `issues` config section (not frozen: Hydra merges conf/issues/ into it)."""

    # GHArchive event files, or directories of them, relative to the repository root.
    events: list[str] = field(default_factory=list)
    # render.render_issue's thresholds (StarCoder2's issue filters).
    min_chars: int = 200
    max_chars: int = 7000
    max_events: int = 10
    min_users: int = 2
    max_lines: int = 80
    tail_lines: int = 20

    def __post_init__(self) -> None:
        for key in ("min_chars", "max_chars", "max_events", "min_users", "max_lines", "tail_lines"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.tail_lines > self.max_lines:
            raise ValueError(f"tail_lines ({self.tail_lines}) must not exceed max_lines ({self.max_lines})")

    def thresholds(self) -> dict[str, int]:
        """The keyword arguments of render.render_issue."""
        return {key: getattr(self, key) for key in ("min_chars", "max_chars", "max_events", "min_users",
                                                     "max_lines", "tail_lines")}


def event_files(root: Path, entries: list[str]) -> list[Path]:
    """Every event file the entries name (a directory's `*.json.gz` in name order); fails naming a missing one."""
    files: list[Path] = []
    for entry in entries:
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if path.is_dir():
            files.extend(sorted(path.glob(EVENT_FILES)))
        elif path.is_file():
            files.append(path)
        else:
            raise StageError(f"issues.events: {entry} does not exist; fix conf/issues/")
    return files


def run_issues(ctx: StageContext) -> None:
    """Write data/issues/ (one row per kept conversation, sorted by repository and number) and its counts."""
    cfg = ctx.section("issues", IssuesConfig)
    files = event_files(ctx.root, cfg.events)
    conversations, read_counts = read_events(files)
    entries = read_opt_out(ctx.root / ctx.cfg.source.opt_out) if ctx.cfg.source.get("opt_out") else frozenset()
    dropped = dict.fromkeys(REASONS, 0)
    rows: list[dict[str, Any]] = []
    opted = 0
    for conv in conversations:
        if opted_out(conv.repo, entries):
            opted += 1
            continue
        result = render_issue(conv, **cfg.thresholds())
        if isinstance(result, Dropped):
            dropped[result.reason] += 1
            continue
        rows.append({"repo_name": conv.repo, "number": conv.number, "users": result.users,
                     "events": result.events, "text": result.text})
    with atomic_output(ctx.output(layout.ISSUES)) as tmp:
        write_shard(pa.Table.from_pylist(rows, schema=schemas.ISSUES), tmp / shard_name(0))
    metrics = {"event_files": len(files), "events": dict(sorted(read_counts.items())),
               "conversations": len(conversations), "opted_out": opted, "dropped": dropped, "issues": len(rows),
               "bytes": sum(len(r["text"].encode("utf-8")) for r in rows)}
    log.info("%d issues of %d conversations from %d event files -> %s (dropped: %s)", len(rows), len(conversations),
             len(files), ctx.output(layout.ISSUES), dropped)
    ctx.write_metrics(metrics)
