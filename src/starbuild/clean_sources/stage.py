"""The `clean_sources` stage: Table 3's processing of notebooks, issues and pull requests.

For each source (sources.SOURCES), in order: near dedup with the `dedup` section's MinHash-LSH parameters
over the whole source (near_dup.py), then, shard by shard, malware, benchmark decontamination and PII
redaction with the `clean` section's settings (shard.py). Output shard i holds the surviving rows of input
shard i in their order, so the output does not depend on the executor; metrics/clean_sources.json counts
every removal and redaction per source.
"""

from __future__ import annotations

import bisect
import logging
import tempfile
from pathlib import Path
from typing import Any

from starbuild.clean.stage import Cleaners, cleaners
from starbuild.clean_sources.near_dup import NearDuplicates, first_rows, near_duplicates
from starbuild.clean_sources.shard import CleanShard
from starbuild.clean_sources.sources import SOURCES, Source
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext
from starbuild.dedup.stage import DedupConfig
from starbuild.executors import Executor, make_executor
from starbuild.shards.pipeline import sum_counts

log = logging.getLogger(__name__)


def removed_per_shard(found: NearDuplicates, shards: list[Path]) -> list[list[int]]:
    """Each shard's near-duplicate rows, as indices within the shard, ascending."""
    removed = sorted(found.removed)
    starts = first_rows(shards)
    bounds = [bisect.bisect_left(removed, start) for start in starts] + [len(removed)]
    return [[p - start for p in removed[lo:hi]] for start, lo, hi in zip(starts, bounds[:-1], bounds[1:], strict=True)]


def clean_source(ctx: StageContext, source: Source, dedup: DedupConfig, built: Cleaners, executor: Executor,
                 work: Path) -> dict[str, Any]:
    """Write one source's cleaned table; return its metrics."""
    shards = ctx.input_shards(source.table, source.schema)
    log.info("%s: cleaning %d shards from %s", source.name, len(shards), source.table)
    if dedup.near_dup:
        found = near_duplicates(source, shards, dedup.minhash(), dedup.verify, executor, work)
    else:
        found = NearDuplicates(frozenset(), {})
    with atomic_output(ctx.output(source.out)) as out:
        removed = removed_per_shard(found, shards)
        tasks = [(src, out / src.name, rows) for src, rows in zip(shards, removed, strict=True)]
        counts = executor.map(CleanShard(source, built), tasks, desc=f"clean {source.name}",
                              labels=[str(src) for src in shards])
    metrics = {**sum_counts(counts), "near_dup": found.counts}
    log.info("%s: %d rows in, %d near-duplicates, %d malware, %d contaminated %s, %d PII spans %s, %d rows out -> %s",
             source.name, metrics["rows_in"], metrics["near_dup_removed"], metrics["malware_removed"],
             metrics["decontaminated_removed"], metrics["decontaminated"], metrics["pii_redacted"], metrics["pii"],
             metrics["rows_out"], ctx.output(source.out))
    return metrics


def run_clean_sources(ctx: StageContext) -> None:
    """Write data/sources/{notebooks,issues,pull_requests}/ and metrics/clean_sources.json."""
    dedup = ctx.section("dedup", DedupConfig)
    built = cleaners(ctx)
    executor = make_executor(ctx.cfg.executor)
    bands, rows = dedup.minhash().bands_rows()
    metrics: dict[str, Any] = {
        "near_dup": {"enabled": dedup.near_dup, "threshold": dedup.threshold, "bands": bands, "rows": rows},
        "malware_scanned": built.scanner is not None,
        "benchmarks_skipped": list(built.patterns.skipped) if built.patterns else [],
        "sources": {},
    }
    # Band, edge and spill files stay out of the repository.
    with tempfile.TemporaryDirectory(prefix="starbuild-clean-sources-") as work:
        for source in SOURCES:
            metrics["sources"][source.name] = clean_source(ctx, source, dedup, built, executor, Path(work))
    ctx.write_metrics(metrics)
