"""The `clean` stage: drop malware and files containing benchmark strings, then redact PII in the rest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from starbuild.clean.decontaminate import PatternSet, decontaminate_table, load_patterns, removal_table
from starbuild.clean.malware import Scanner, remove_malware, scanner_from
from starbuild.clean.pii import CleanConfig
from starbuild.clean.redact import Rules, check, redact_table, rules_from
from starbuild.core import layout, schemas
from starbuild.core.schemas import UNKNOWN_LANGUAGE
from starbuild.core.shards import atomic_output, read_shard, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import make_executor
from starbuild.shards.pipeline import sum_counts
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

# Label of a null `license_type` in the metrics (a JSON key cannot be null); pull always sets one.
UNKNOWN_LICENSE_TYPE = "unknown"


def files_and_bytes_by(table: pa.Table, column: str, missing: str) -> dict[str, dict[str, int]]:
    """Files and bytes (`length_bytes`) of `table` per value of `column`, null counted as `missing`, keys sorted."""
    keys = pc.fill_null(table.column(column), missing)
    grouped = pa.table({"key": keys, "bytes": table.column("length_bytes")}).group_by("key").aggregate(
        # min_count=0: a group whose sizes are all null adds 0 bytes, not null.
        [([], "count_all"), ("bytes", "sum", pc.ScalarAggregateOptions(min_count=0))])
    rows = zip(*(grouped.column(name).to_pylist() for name in ("key", "count_all", "bytes_sum")), strict=True)
    return {key: {"files": files, "bytes": size} for key, files, size in sorted(rows)}


def output_counts(table: pa.Table) -> dict[str, Any]:
    """What a cleaned shard holds, per language and per license type (summed over shards by sum_counts)."""
    return {"languages": files_and_bytes_by(table, "language", UNKNOWN_LANGUAGE),
            "license_types": files_and_bytes_by(table, "license_type", UNKNOWN_LICENSE_TYPE)}


def clean_table(
    table: pa.Table, rules: Rules, patterns: PatternSet | None, scanner: Scanner | None = None
) -> tuple[pa.Table, dict[str, Any], list[dict[str, str]]]:
    """One shard cleaned: malware and contaminated files dropped (when asked), PII redacted; counts, removals."""
    counts: dict[str, Any] = {"files": table.num_rows, "files_malware": 0, "malware": {},
                              "files_decontaminated": 0, "decontaminated": {}}
    removals: list[dict[str, str]] = []
    if scanner is not None:
        table, signatures = remove_malware(table, scanner)
        counts.update(files_malware=signatures.total(), malware=dict(sorted(signatures.items())))
    if patterns is not None:
        # Matched on the original content: redaction must not hide (or fake) a benchmark string.
        table, removals, found = decontaminate_table(table, patterns)
        counts.update(found)
    table, redacted = redact_table(table, rules)
    # Counted on the rows written to data/clean, after every drop (malware, contamination, failed PII detection).
    return table, {**counts, **redacted, **output_counts(table)}, removals


@dataclass(frozen=True)
class _CleanShard:
    """Picklable worker: clean shard `src` into `dst`; return its counts and removal rows."""

    rules: Rules
    patterns: PatternSet | None
    scanner: Scanner | None

    def __call__(self, paths: tuple[Path, Path]) -> tuple[dict[str, Any], list[dict[str, str]]]:
        src, dst = paths
        table, counts, removals = clean_table(read_shard(src), self.rules, self.patterns, self.scanner)
        write_shard(table, dst)
        return counts, removals


@dataclass(frozen=True)
class Cleaners:
    """What the `clean` section asks for, built and checked once: PII rules, benchmark patterns, malware scanner."""

    rules: Rules
    # None: decontamination disabled; no malware database set.
    patterns: PatternSet | None
    scanner: Scanner | None


def cleaners(ctx: StageContext) -> Cleaners:
    """The `clean` section's cleaners (shared with the clean_sources stage); a bad setting is a StageError."""
    cfg = ctx.section("clean", CleanConfig)
    rules = rules_from(cfg, ctx.root)
    try:
        check(rules)
        scanner = scanner_from(cfg.malware, ctx.root)
    except ValueError as err:
        raise StageError(f"clean.{err}; fix conf/clean/") from err
    patterns = load_patterns(cfg.decontamination, ctx.root) if cfg.decontamination.enabled else None
    if patterns is not None:
        log.info("decontamination: %s", ", ".join(f"{name} {n['patterns']} strings ({n['too_short']} too short)"
                                                  for name, n in patterns.stats.items()))
    return Cleaners(rules, patterns, scanner)


def run_clean(ctx: StageContext) -> None:
    """Write data/clean/ (data/dedup/ without contaminated files, PII redacted) and data/decontaminated/."""
    # The removal rows come back to this process and go into one table: contamination is rare, so it stays small.
    built = cleaners(ctx)
    rules, patterns, scanner = built.rules, built.patterns, built.scanner
    executor = make_executor(ctx.cfg.executor)
    shards = ctx.input_shards(layout.DEDUP, schemas.DEDUP)
    log.info("cleaning %d shards from %s", len(shards), layout.DEDUP)
    with atomic_output(ctx.output(layout.CLEAN)) as clean_dir, atomic_output(ctx.output(layout.DECONTAMINATED)) as gone:
        tasks = [(src, clean_dir / src.name) for src in shards]
        # A shard clamscan cannot scan fails the stage as one line naming the shard (TaskFailed).
        cache = WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg)
        results = cache.map(executor, _CleanShard(rules, patterns, scanner), tasks, cache.keys(shards),
                            outputs=[dst for _, dst in tasks], desc="clean", labels=[str(src) for src in shards])
        write_shard(removal_table([row for _, rows in results for row in rows]), gone / shard_name(0))
    cache.finish()
    metrics = sum_counts(counts for counts, _ in results)
    metrics["benchmarks_skipped"] = list(patterns.skipped) if patterns else []
    metrics["decontamination_patterns"] = patterns.stats if patterns else {}
    if scanner is not None:
        log.info("removed %d of %d files as malware %s", metrics["files_malware"], metrics["files"],
                 metrics["malware"])
    log.info("removed %d of %d files as benchmark contamination %s -> %s", metrics["files_decontaminated"],
             metrics["files"], metrics["decontaminated"], ctx.output(layout.DECONTAMINATED))
    log.info("redacted %d PII spans %s in %d files (%d files dropped: detection failed) -> %s",
             metrics["pii_redacted"], metrics["pii"], metrics["files_with_pii"], metrics["files_pii_failed"],
             ctx.output(layout.CLEAN))
    ctx.write_metrics(metrics)
