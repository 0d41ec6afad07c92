"""The `filter` stage: apply the Stack v2 filters to every raw shard, counting drops per reason."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, read_shard, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.filters.stack_v2 import REASONS, Thresholds, drop_reasons
from starbuild.shards.executor import map_shards

log = logging.getLogger(__name__)


def filter_shard(task: tuple[str, str, Thresholds]) -> dict[str, Any]:
    """Filter one shard into its output path; return its counts (runs in a worker process)."""
    src, dst, thresholds = task
    table = read_shard(Path(src))
    with duckdb.connect() as con:
        reasons = drop_reasons(con, table, thresholds)
    keep = pa.array([reason is None for reason in reasons], pa.bool_())
    kept = table.filter(keep)
    write_shard(kept, Path(dst))
    return {
        "input_files": table.num_rows,
        "kept_files": kept.num_rows,
        "input_bytes": int(pc.sum(table.column("length_bytes")).as_py() or 0),
        "kept_bytes": int(pc.sum(kept.column("length_bytes")).as_py() or 0),
        "dropped": dict(Counter(reason for reason in reasons if reason is not None)),
    }


def merge_counts(per_shard: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum shard counts into the stage metrics, with every reason present."""
    totals: dict[str, Any] = {key: 0 for key in ("input_files", "kept_files", "input_bytes", "kept_bytes")}
    dropped = dict.fromkeys(REASONS, 0)
    for counts in per_shard:
        for key in totals:
            totals[key] += counts[key]
        for reason, n in counts["dropped"].items():
            dropped[reason] += n
    totals["dropped"] = dropped
    return totals


def run_filter(ctx: StageContext) -> None:
    """Write data/filtered/: the rows of data/raw/ that pass every filter, shard for shard."""
    try:
        thresholds = Thresholds.from_cfg(OmegaConf.to_container(ctx.cfg.filter))
    except ValueError as err:
        raise StageError(f"{err}; fix conf/filter/") from err
    shards = ctx.input_shards(layout.RAW, schemas.RAW)
    log.info("filtering %d shards from %s", len(shards), layout.RAW)
    with atomic_output(ctx.output(layout.FILTERED)) as tmp:
        tasks = [(str(shard), str(tmp / shard.name), thresholds) for shard in shards]
        per_shard = map_shards(filter_shard, tasks, ctx.cfg.executor, desc="filter")
    metrics = merge_counts(per_shard)
    log.info(
        "kept %d of %d files -> %s; dropped %s",
        metrics["kept_files"],
        metrics["input_files"],
        layout.FILTERED,
        metrics["dropped"],
    )
    ctx.write_metrics(metrics)
