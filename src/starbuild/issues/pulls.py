"""Pull requests of the issues stage: GHArchive PR events and their changed files rendered into data/pull_requests/.

Each PR's events (pull_events.py) are grouped by (repository, number); its head commits' changed files
come from the changed-files table and the content store (pull_files.py); the renderer (pull_render.py)
keeps or drops it. Opted-out repositories are left out before anything is fetched. PRs come sorted by
repository, so a batch of whole repositories is rendered at a time: the per-repository subsample counts
a repository's PRs within its batch, which holds all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from starbuild.core import schemas
from starbuild.core.shards import shard_name, write_shard
from starbuild.issues.pull_events import PullConversation
from starbuild.issues.pull_files import CommitPair, load_diffs, read_changed_files
from starbuild.issues.pull_render import REASONS, DroppedPull, FileDiff, PullRenderConfig, render_pull
from starbuild.swh.content_store import ContentCache, ContentStore
from starbuild.swh.opt_out import opted_out
from starbuild.swh.storage import S3Options, local_or_url


@dataclass
class PullRequestsConfig:
    """`issues.pull_requests`: where PR files come from, and The Stack v2's render parameters."""

    # The changed-files table (pull_files.py), relative to the repository root; "" renders no PRs.
    changed_files: str = ""
    # File contents by sha1, gzip: a directory, s3://… or http(s)://… (as source.content_store).
    content_store: str = ""
    download_workers: int = 8
    # PRs rendered (and their files fetched) per batch of whole repositories: what memory holds at a time, and
    # the PRs per output shard.
    batch_prs: int = 10_000
    render: PullRenderConfig = field(default_factory=PullRenderConfig)

    def __post_init__(self) -> None:
        if self.changed_files and not self.content_store:
            raise ValueError("content_store must be set when changed_files is (PR files are fetched from it)")
        for key in ("download_workers", "batch_prs"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def commit_pairs(conv: PullConversation) -> list[CommitPair]:
    """The PR's head commits, each against the base it was opened on, in the order its events first name them
    (the order its base files are listed in)."""
    base = next((e.base_sha for e in conv.events if e.base_sha is not None), None)
    if base is None:
        return []
    return list(dict.fromkeys((conv.repo, base, e.head_sha) for e in conv.events if e.head_sha is not None))


def repo_batches(conversations: Iterable[PullConversation], batch_prs: int) -> Iterator[list[PullConversation]]:
    """Whole repositories' PRs (the input sorted by repository), at least batch_prs at a time but the last."""
    batch: list[PullConversation] = []
    for conv in conversations:
        if len(batch) >= batch_prs and conv.repo != batch[-1].repo:
            yield batch
            batch = []
        batch.append(conv)
    if batch:
        yield batch


class PullRequestWriter:
    """Renders PRs a batch of whole repositories at a time, and writes each batch's kept PRs as one shard."""

    def __init__(self, cfg: PullRequestsConfig, root: Path, opt_out: frozenset[str], store: ContentStore | None,
                 seed: int, out_dir: Path) -> None:
        self.cfg, self.root, self.opt_out, self.store = cfg, root, opt_out, store
        self.seed, self.out_dir = seed, out_dir
        self.files: Counter[str] = Counter()
        self.dropped = dict.fromkeys(REASONS, 0)
        self.conversations = self.opted_out = self.kept = self.bytes = self.shards = 0

    def write(self, conversations: Iterable[PullConversation]) -> dict[str, Any]:
        """Render and write every PR; the PR metrics."""
        for batch in repo_batches(conversations, self.cfg.batch_prs):
            self._write_shard(self._render(batch))
        if not self.shards:
            self._write_shard([])
        return {"conversations": self.conversations, "opted_out": self.opted_out,
                "files": dict(sorted(self.files.items())), "dropped": self.dropped, "pull_requests": self.kept,
                "bytes": self.bytes}

    def _render(self, batch: list[PullConversation]) -> list[dict[str, Any]]:
        prs_per_repo = Counter(conv.repo for conv in batch)
        self.conversations += len(batch)
        batch = [conv for conv in batch if not opted_out(conv.repo, self.opt_out)]
        self.opted_out += sum(prs_per_repo.values()) - len(batch)
        batch_pairs = [commit_pairs(conv) for conv in batch]
        diffs: dict[CommitPair, list[FileDiff]] = {}
        if self.store is not None:
            changed = read_changed_files(Path(local_or_url(self.cfg.changed_files, self.root)),
                                         {pair for pairs in batch_pairs for pair in pairs})
            diffs = load_diffs(changed, self.store, self.cfg.download_workers, self.files)
        rows = []
        for conv, pairs in zip(batch, batch_pairs, strict=True):
            heads = {pair[2]: diffs[pair] for pair in pairs if diffs.get(pair)}
            result = render_pull(conv, heads, prs_per_repo[conv.repo], self.cfg.render, self.seed)
            if isinstance(result, DroppedPull):
                self.dropped[result.reason] += 1
                continue
            rows.append({"repo_name": conv.repo, "number": conv.number, "events": result.events,
                         "base_files": result.base_files, "text": result.text})
        return rows

    def _write_shard(self, rows: list[dict[str, Any]]) -> None:
        write_shard(pa.Table.from_pylist(rows, schema=schemas.PULL_REQUESTS), self.out_dir / shard_name(self.shards))
        self.shards += 1
        self.kept += len(rows)
        self.bytes += sum(len(row["text"].encode("utf-8")) for row in rows)


def open_store(cfg: PullRequestsConfig, root: Path, content_cache: str, s3: S3Options) -> ContentStore | None:
    """The content store PR files come from, behind the pull stage's cache; None when no PR files are configured."""
    if not cfg.changed_files:
        return None
    cache = ContentCache(Path(local_or_url(content_cache, root)))
    return ContentStore(local_or_url(cfg.content_store, root), cache, s3)

