"""The `filter` stage: apply the configured rules to every raw shard, counting drops per reason."""

from __future__ import annotations

import functools
import logging
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import make_executor
from starbuild.filters.query import RuleSet, rules_from_config
from starbuild.shards.pipeline import transform_shards
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)


def filter_table(table: pa.Table, rules: RuleSet) -> tuple[pa.Table, dict[str, Any]]:
    """The rows of `table` that no rule drops, and the shard's counts (every reason, zeros included)."""
    with duckdb.connect() as con:
        reasons = rules.drop_reasons(con, table)
    kept = table.filter(pa.array([reason is None for reason in reasons], pa.bool_()))
    return kept, {
        "input_files": table.num_rows,
        "kept_files": kept.num_rows,
        "input_bytes": int(pc.sum(table.column("length_bytes")).as_py() or 0),
        "kept_bytes": int(pc.sum(kept.column("length_bytes")).as_py() or 0),
        "dropped": {reason: reasons.count(reason) for reason in rules.reasons},
    }


def run_filter(ctx: StageContext) -> None:
    """Write data/filtered/: the rows of data/raw/ that pass every rule, shard for shard."""
    try:
        rules = rules_from_config(ctx.cfg.filter.get("rules"))
    except (ValueError, TypeError) as err:
        raise StageError(f"{err}; fix conf/filter/") from err
    executor = make_executor(ctx.cfg.executor)
    shards = ctx.input_shards(layout.RAW, schemas.RAW)
    log.info("filtering %d shards from %s with rules %s", len(shards), layout.RAW, ", ".join(rules.reasons))
    metrics = transform_shards(shards, ctx.output(layout.FILTERED), functools.partial(filter_table, rules=rules),
                               executor, desc="filter", cache=WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg))
    log.info(
        "kept %d of %d files -> %s; dropped %s",
        metrics["kept_files"],
        metrics["input_files"],
        ctx.output(layout.FILTERED),
        metrics["dropped"],
    )
    ctx.write_metrics(metrics)
