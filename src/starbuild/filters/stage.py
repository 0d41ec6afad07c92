"""The `filter` stage: every rule's verdict on every raw file in one DuckDB query per shard (per group of
shards where there are many); the funnel.

Writes the kept files (data/filtered/), the funnel counts in files and bytes, in total and per
language (metrics/filter.json), the funnel in rule order (plots/filter_funnel.csv) and, with
`filter.keep_rejects=N`, N dropped files per rule (data/filter_rejects/).
"""

from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_file, atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import make_executor
from starbuild.filters.funnel import FUNNEL_COLUMNS, ShardFunnel, funnel_metrics, funnel_rows, shard_funnel
from starbuild.filters.query import RuleSet, first_failing, process_connection, rules_from_config
from starbuild.filters.rejects import merge_rejects, shard_rejects
from starbuild.shards.pipeline import task_sizes, transform_shard_groups
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

FUNNEL_PLOT = layout.PLOTS / "filter_funnel.csv"
# The most shards one task filters with one query, and the most Parquet bytes they may hold together: memory
# grows with both, the output with neither. Four shards of the pull's default size take about 4 MB on disk;
# a shard of 8 MB or more is filtered alone.
SHARDS_PER_QUERY = 4
QUERY_FILE_BYTES = 8_000_000


def filter_tables(tables: list[pa.Table], rules: RuleSet, keep_rejects: int = 0, duckdb_threads: int | None = None
                  ) -> list[tuple[pa.Table, tuple[ShardFunnel, pa.Table]]]:
    """For each of `tables`: its rows no rule drops, and its funnel counts and up to `keep_rejects` drops per
    rule; every table's verdicts come from one query."""
    done = []
    for table, verdicts in zip(tables, rules.verdicts_of(tables, process_connection(duckdb_threads)), strict=True):
        first = first_failing(verdicts, table.num_rows)
        kept = table.filter(pa.array(first < 0))
        funnel = shard_funnel(verdicts, first, table.column("length_bytes"), table.column("language"))
        done.append((kept, (funnel, shard_rejects(table, verdicts, keep_rejects))))
    return done


def write_funnel(path: Path, rows: list[dict[str, Any]]) -> None:
    """The funnel CSV `dvc plots` draws, written atomically."""
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FUNNEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def run_filter(ctx: StageContext) -> None:
    """Write data/filtered/ (the rows of data/raw/ no rule drops, shard for shard), the funnel and the rejects."""
    keep_rejects = ctx.cfg.filter.get("keep_rejects", 0)
    if isinstance(keep_rejects, bool) or not isinstance(keep_rejects, int) or keep_rejects < 0:
        raise StageError(f"filter.keep_rejects must be an integer >= 0, got {keep_rejects!r}; fix conf/filter/")
    try:
        rules = rules_from_config(ctx.cfg.filter.get("rules"), ctx.root)
    except (ValueError, TypeError) as err:
        raise StageError(f"{err}; fix conf/filter/") from err
    executor = make_executor(ctx.cfg.executor)
    shards = ctx.input_shards(layout.RAW, schemas.RAW)
    log.info("filtering %d shards from %s with rules %s", len(shards), layout.RAW, ", ".join(rules.reasons))
    # Worker processes, not threads: BeautifulSoup holds the GIL while it parses an HTML file. Each worker's
    # DuckDB gets its share of the cores (measured: 1.5x the throughput of each using every core).
    job = functools.partial(filter_tables, rules=rules, keep_rejects=keep_rejects,
                            duckdb_threads=executor.threads_per_task(len(shards)))
    # Where there are shards to spare, a task filters several with one query: planning it costs as much as
    # a 4 MB shard's rows.
    sizes = task_sizes([Path(shard).stat().st_size for shard in shards], executor.parallel_tasks(), SHARDS_PER_QUERY,
                       QUERY_FILE_BYTES)
    results = transform_shard_groups(shards, ctx.output(layout.FILTERED), job, executor, desc="filter",
                                     cache=WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg), sizes=sizes)
    with atomic_output(ctx.output(layout.FILTER_REJECTS)) as rejects_dir:
        write_shard(merge_rejects([rejects for _, rejects in results], rules.reasons, keep_rejects),
                    rejects_dir / shard_name(0))
    metrics = funnel_metrics((funnel for funnel, _ in results), rules.reasons)
    write_funnel(ctx.output(FUNNEL_PLOT), funnel_rows(metrics, rules.reasons))
    log.info("kept %d of %d files (%d of %d bytes) -> %s; dropped first by %s", metrics["kept_files"],
             metrics["input_files"], metrics["kept_bytes"], metrics["input_bytes"], ctx.output(layout.FILTERED),
             {reason: metrics["dropped_first"][reason]["files"] for reason in rules.reasons})
    ctx.write_metrics(metrics)
