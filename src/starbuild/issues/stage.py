"""The `issues` stage: GitHub issues and pull requests from GHArchive event files, rendered as StarCoder2 did.

Every conversation of the configured event files whose repository is not opted out is rendered
(render.py) into data/issues/, and so is every pull request (pulls.py) into data/pull_requests/; what
the readers skipped, the opted-out repositories and each drop reason are counted in metrics/issues.json.
The event files are read once, each event offered to both parsers; events are grouped by issue and by
PR out of core (events.Grouping) and rows written a shard at a time, so memory stays bounded whatever
the event files given.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.issues.events import (
    Conversation,
    conversations_of,
    fill,
    issue_grouping,
    issue_record,
    iter_raw_events,
)
from starbuild.issues.pull_events import PullConversation, pull_conversations_of, pull_grouping, pull_record
from starbuild.issues.pull_files import ChangedFilesError
from starbuild.issues.pulls import PullRequestsConfig, PullRequestWriter, open_store
from starbuild.issues.render import REASONS, Dropped, render_issue
from starbuild.issues.sources import Fetching, fetch, resolve
from starbuild.swh.opt_out import opted_out, read_opt_out
from starbuild.swh.storage import S3Options

log = logging.getLogger(__name__)

# A DuckDB memory setting: a number and a unit.
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


@dataclass
class IssuesConfig:
    """The `issues` config section (not frozen: Hydra merges conf/issues/ into it)."""

    # GHArchive event files, or directories of them, relative to the repository root; s3://bucket/key or
    # s3://bucket/prefix; http(s):// URLs. Brace ranges expand in order: `…/2024-01-01-{0..23}.json.gz`.
    events: list[str] = field(default_factory=list)
    # Remote event files are downloaded once into this directory (outside DVC's outs) and reused.
    events_cache: str = ".cache/starbuild/gharchive"
    # S3 endpoint for a non-AWS server (MinIO, a test's moto), unsigned requests (public buckets), region.
    s3_endpoint: str | None = None
    s3_anonymous: bool = True
    s3_region: str = "us-east-1"
    # Seconds before one HTTP request is given up (and retried); tries per file for 429, 5xx and timeouts.
    request_timeout: float = 30.0
    request_retries: int = 6
    # Remote files downloaded at once.
    download_workers: int = 4
    # DuckDB's memory for each grouping (issues, PRs; a DuckDB size); what does not fit spills to disk.
    group_memory: str = "1GB"
    # Kept issues per output shard (what memory holds of them at a time).
    rows_per_shard: int = 100_000
    # Pull requests from the same events: their changed files and The Stack v2's render parameters.
    pull_requests: PullRequestsConfig = field(default_factory=PullRequestsConfig)
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
        for key in ("request_retries", "download_workers", "rows_per_shard"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")
        if not MEMORY_SIZE.fullmatch(self.group_memory):
            raise ValueError(f"group_memory must be a size such as 512MB or 2GB, got {self.group_memory!r}")

    def s3(self) -> S3Options:
        """The section's S3 settings (event files and PR contents alike)."""
        return S3Options(self.s3_endpoint, self.s3_anonymous, self.s3_region)

    def fetching(self, root: Path) -> Fetching:
        """How remote event files are reached and where they are cached (relative to the repository `root`)."""
        cache = Path(self.events_cache) if Path(self.events_cache).is_absolute() else root / self.events_cache
        return Fetching(cache, self.s3(), self.request_timeout, self.request_retries, self.download_workers)

    def thresholds(self) -> dict[str, int]:
        """The keyword arguments of render.render_issue."""
        return {key: getattr(self, key) for key in ("min_chars", "max_chars", "max_events", "min_users",
                                                     "max_lines", "tail_lines")}


def event_files(root: Path, cfg: IssuesConfig) -> list[Path]:
    """The local path of every event file `cfg.events` names, in order (sources.py: directories, s3://, https://,
    brace ranges), remote ones downloaded into the cache first; fails naming an entry that names nothing."""
    fetching = cfg.fetching(root)
    return fetch(resolve(root, cfg.events, fetching.s3), fetching)


def write_issues(conversations: Iterable[Conversation], cfg: IssuesConfig, opt_out: frozenset[str],
                 out_dir: Path) -> dict[str, Any]:
    """Render every issue conversation into shards of `cfg.rows_per_shard` rows in out_dir; the issue counts."""
    dropped = dict.fromkeys(REASONS, 0)
    rows: list[dict[str, Any]] = []
    read = opted = kept = size = shards = 0
    for conv in tqdm(conversations, desc="issues", unit="issue", disable=not sys.stderr.isatty()):
        read += 1
        if opted_out(conv.repo, opt_out):
            opted += 1
            continue
        result = render_issue(conv, **cfg.thresholds())
        if isinstance(result, Dropped):
            dropped[result.reason] += 1
            continue
        rows.append({"repo_name": conv.repo, "number": conv.number, "users": result.users,
                     "events": result.events, "text": result.text})
        kept += 1
        size += len(result.text.encode("utf-8"))
        if len(rows) == cfg.rows_per_shard:
            write_shard(pa.Table.from_pylist(rows, schema=schemas.ISSUES), out_dir / shard_name(shards))
            rows, shards = [], shards + 1
    if rows or not shards:
        write_shard(pa.Table.from_pylist(rows, schema=schemas.ISSUES), out_dir / shard_name(shards))
    return {"conversations": read, "opted_out": opted, "dropped": dropped, "issues": kept,
            "bytes": size}


def write_pulls(conversations: Iterable[PullConversation], cfg: IssuesConfig, opt_out: frozenset[str],
                ctx: StageContext, out_dir: Path) -> dict[str, Any]:
    """Render every pull request into out_dir (pulls.py); the PR counts."""
    store = open_store(cfg.pull_requests, ctx.root, ctx.cfg.source.content_cache, cfg.s3())
    writer = PullRequestWriter(cfg.pull_requests, ctx.root, opt_out, store, int(ctx.cfg.seed), out_dir)
    try:
        return writer.write(tqdm(conversations, desc="pull requests", unit="PR", disable=not sys.stderr.isatty()))
    except ChangedFilesError as err:
        raise StageError(f"issues.pull_requests.changed_files: {err}; fix conf/issues/") from err


def run_issues(ctx: StageContext) -> None:
    """Write data/issues/ and data/pull_requests/ (rows sorted by repository and number) and their counts."""
    cfg = ctx.section("issues", IssuesConfig)
    files = event_files(ctx.root, cfg)
    opt_out = read_opt_out(ctx.root / ctx.cfg.source.opt_out) if ctx.cfg.source.get("opt_out") else frozenset()
    # What the reader counts (lines, bad JSON, cut files) holds for both; each parser counts its own skips.
    read_counts: Counter[str] = Counter()
    issue_counts: Counter[str] = Counter()
    pull_counts: Counter[str] = Counter()
    with issue_grouping(cfg.group_memory) as issues, pull_grouping(cfg.group_memory) as pulls:
        # One read of the event files fills both groupings.
        fill(iter_raw_events(files, read_counts), [(issue_record, issues, issue_counts),
                                                   (pull_record, pulls, pull_counts)])
        with atomic_output(ctx.output(layout.ISSUES)) as tmp:
            metrics = write_issues(conversations_of(issues.groups(issue_counts)), cfg, opt_out, tmp)
        with atomic_output(ctx.output(layout.PULL_REQUESTS)) as tmp:
            prs = write_pulls(pull_conversations_of(pulls.groups(pull_counts)), cfg, opt_out, ctx, tmp)
    metrics = {"event_files": len(files), "events": dict(sorted((read_counts + issue_counts).items())), **metrics,
               "pull_requests": {"events": dict(sorted((read_counts + pull_counts).items())), **prs}}
    log.info("%d issues of %d conversations and %d PRs of %d from %d event files -> %s, %s (dropped: %s; %s)",
             metrics["issues"], metrics["conversations"], prs["pull_requests"], prs["conversations"], len(files),
             ctx.output(layout.ISSUES), ctx.output(layout.PULL_REQUESTS), metrics["dropped"], prs["dropped"])
    ctx.write_metrics(metrics)
