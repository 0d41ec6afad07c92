"""The pull stage: every origin of the configured source into `data/raw/` shards."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import make_executor
from starbuild.swh import licenses, scancode
from starbuild.swh.opt_out import opted_out, read_opt_out
from starbuild.swh.origins import WHOLE, OriginError, Part
from starbuild.swh.source import OriginSummary, Source, SourceConfig, combine_summaries, pull_one, read_rows
from starbuild.swh.sources import make_source
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

# Every reason a file of an origin is not pulled; all appear in the metrics, zero or not.
SKIP_REASONS = ("binary", "too_large", "undecodable", "undecodable_path", "symlink", "submodule", "unreadable",
                "special_file", "missing_object", "empty_repository", "content_missing", "content_corrupt",
                "fetch_failed")
# A large origin is cut into parts of about a worker's share of all files, a share of at least this many:
# below it a part's own tree walk and license reads outweigh what the split gains. (Half a share a part
# balanced no better: every part walks the origin's trees again.)
MIN_PART_FILES = 1000


def origin_parts(counts: list[int | None], parallel: int | None) -> list[int]:
    """How many tasks pull each origin: one, except an origin with more than a worker's share of the files
    (all files over `parallel`, at least MIN_PART_FILES), cut into parts of about that share. A None count
    is an origin that cannot be cut; parts never change the rows, only who computes them."""
    known = [c for c in counts if c]
    if not parallel or parallel <= 1 or not known:
        return [1] * len(counts)
    share = max(MIN_PART_FILES, -(-sum(known) // parallel))
    return [max(1, -(-c // share)) if c else 1 for c in counts]


@dataclass(frozen=True)
class PullTask:
    """One task of the pull: an origin, or a part of a large one, and the file its rows go to."""

    origin_index: int
    part: Part
    staged: Path
    # About how many files the task reads (None: unknown).
    files: int | None = None

    @property
    def row_order(self) -> tuple[int, int]:
        """Where the task's rows go in data/raw: by origin, then by part."""
        return self.origin_index, self.part.index


def pull_tasks(source: Source, origins: list[Any], staging: Path, parallel: int | None) -> list[PullTask]:
    """The pull's tasks: each origin whole, or in parts where the source can cut it, largest first (so that a
    large task does not start last and leave the other workers idle)."""
    counting = getattr(source, "file_counts", None)
    counts = counting(origins) if counting else [None] * len(origins)
    tasks = [PullTask(i, Part(k, n), staging / f"{i:05d}-{k:04d}.arrow", None if c is None else c // n)
             for i, (c, n) in enumerate(zip(counts, origin_parts(counts, parallel), strict=True)) for k in range(n)]
    return sorted(tasks, key=lambda t: -(t.files or 0))


def _rows_in_order(files: list[Path]) -> Iterator[pa.RecordBatch]:
    for path in files:
        yield from read_rows(path)


def write_raw_shards(staged: list[Path], out_dir: Path, target_bytes: int) -> int:
    """Re-cut the per-origin files into shards of about `target_bytes` of content; return the count."""
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    count = 0

    def flush() -> None:
        nonlocal pending, pending_bytes, count
        table = pa.Table.from_batches(pending, schema=schemas.RAW)
        write_shard(table, out_dir / shard_name(count))
        count, pending, pending_bytes = count + 1, [], 0

    for batch in _rows_in_order(staged):
        start = 0
        for i, size in enumerate(batch.column("length_bytes").to_pylist()):
            pending_bytes += size
            if pending_bytes >= target_bytes:
                pending.append(batch.slice(start, i + 1 - start))
                start = i + 1
                flush()
        if start < batch.num_rows:
            pending.append(batch.slice(start))
    if pending or count == 0:
        flush()
    return count


def run_pull(ctx: StageContext) -> None:
    """Pull every origin, then write `data/raw/` and the pull metrics."""
    source_cfg = ctx.section("source", SourceConfig)
    try:
        source = make_source(source_cfg, ctx.root)
        origins = source.origins()
    except (OriginError, ValueError) as err:
        raise StageError(str(err)) from err
    if source_cfg.license_detector == licenses.SCANCODE:
        try:
            scancode.require()
        except scancode.ScanCodeMissing as err:
            raise StageError(str(err)) from err
    if not (ctx.root / source_cfg.opt_out).is_file():
        raise StageError(f"the opt-out list {source_cfg.opt_out} does not exist; create it (it may be empty) "
                         "or fix source.opt_out in conf/source/")
    with ctx.reading(Path(source_cfg.opt_out)) as opt_out_file:
        entries = read_opt_out(opt_out_file)
    removed = sorted(o.name for o in origins if opted_out(o.name, entries))
    origins = [o for o in origins if o.name not in removed]
    if removed:
        log.info("opted out: %d origins (%s)", len(removed), ", ".join(removed))
    executor = make_executor(ctx.cfg.executor)
    cache = WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg)
    log.info("pulling %d origins", len(origins))
    with atomic_output(ctx.output(layout.RAW)) as tmp:
        staging = tmp / "_origins"
        staging.mkdir()
        plan = pull_tasks(source, origins, staging, executor.parallel_tasks())
        tasks = [(source, origins[t.origin_index], t.part, t.staged) for t in plan]
        # An origin that fails in a worker surfaces as one line naming it (TaskFailed, a StageError). Origins a
        # killed run finished come from the work cache, for sources that can name an origin's content cheaply.
        keyed = getattr(source, "origin_keys", None)
        origin_keys = keyed(origins) if keyed is not None and cache.directory else [None] * len(origins)
        results = cache.map(executor, pull_one, tasks, [_part_key(origin_keys[t.origin_index], t.part) for t in plan],
                            outputs=[t.staged for t in plan], desc="origins",
                            labels=[_part_label(origins[t.origin_index].name, t.part) for t in plan])
        done = sorted(zip(plan, results, strict=True), key=lambda done: done[0].row_order)
        summaries = [combine_summaries([r for t, r in done if t.origin_index == i]) for i in range(len(origins))]
        shards = write_raw_shards([t.staged for t, _ in done], tmp, source_cfg.shard_target_bytes)
        shutil.rmtree(staging)
    cache.finish()
    log.info("wrote %d shards to %s", shards, ctx.output(layout.RAW))
    ctx.write_metrics({**pull_metrics(summaries, shards), "opted_out": removed})


def _part_key(origin_key: str | None, part: Part) -> str | None:
    if origin_key is None or part == WHOLE:
        return origin_key
    return hashlib.sha256(f"{origin_key}:{part.index}/{part.count}".encode()).hexdigest()


def _part_label(name: str, part: Part) -> str:
    return name if part == WHOLE else f"{name} (part {part.index + 1} of {part.count})"


def pull_metrics(summaries: list[OriginSummary], shards: int) -> dict:
    """Totals per skip reason, language and license type, and one entry per origin."""
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    languages: dict[str, int] = {}
    license_types: dict[str, int] = {}
    for s in summaries:
        for reason, n in s.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        for language, n in s.languages.items():
            languages[language] = languages.get(language, 0) + n
        for license_type, n in s.files_by_license_type.items():
            license_types[license_type] = license_types.get(license_type, 0) + n
    return {
        "origins": {s.name: {k: v for k, v in asdict(s).items() if k != "name"} for s in summaries},
        "files": sum(s.files for s in summaries),
        "bytes": sum(s.bytes for s in summaries),
        "shards": shards,
        "skipped": skipped,
        "languages": languages,
        "files_by_license_type": license_types,
    }
