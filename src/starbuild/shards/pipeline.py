"""The shard skeleton every table-to-table stage shares: read a shard, transform it, write it, return its result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from starbuild.core.shards import atomic_output, read_shard, write_shard
from starbuild.executors import Executor
from starbuild.work_cache import WorkCache

# One shard's table in, the table to write and the shard's result (its counts, and what else the stage
# gathers) out.
ShardFn = Callable[[pa.Table], tuple[pa.Table, Any]]


@dataclass(frozen=True)
class _ShardJob:
    """Picklable worker: read `src`, apply `fn`, write `dst`, return the shard's result."""

    fn: ShardFn

    def __call__(self, paths: tuple[Path, Path]) -> Any:
        src, dst = paths
        table, result = self.fn(read_shard(src))
        write_shard(table, dst)
        return result


def sum_counts(per_shard: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum count dicts key by key, nested dicts included; a key missing from a shard counts as 0."""
    total: dict[str, Any] = {}
    for counts in per_shard:
        _add_into(total, counts)
    return total


def _add_into(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    # In place: copying the running total at every level for every shard cost a third of a second over 80
    # filter shards of per-language counts, in the parent, after every worker was done.
    for key, value in counts.items():
        if isinstance(value, int | float):  # tested first: the leaves far outnumber the dicts
            total[key] = total.get(key, 0) + value
        else:
            _add_into(total.setdefault(key, {}), value)


def transform_shards(
    shards: Sequence[Path], out_dir: Path, fn: ShardFn, executor: Executor, desc: str, cache: WorkCache
) -> list[Any]:
    """Write `fn` of every shard under its own name in `out_dir` (atomically); return each shard's result, in
    shard order (`sum_counts` adds up count dicts).

    Shards an interrupted run finished are taken from `cache` instead of being transformed again.
    """
    with atomic_output(out_dir) as tmp:
        tasks = [(Path(src), tmp / Path(src).name) for src in shards]
        per_shard = cache.map(executor, _ShardJob(fn), tasks, cache.keys([src for src, _ in tasks]),
                              outputs=[dst for _, dst in tasks], desc=desc, labels=[str(src) for src in shards])
    cache.finish()
    return per_shard
