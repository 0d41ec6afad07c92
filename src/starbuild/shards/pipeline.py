"""The shard skeleton every table-to-table stage shares: read a shard, transform it, write it, return its result."""

from __future__ import annotations

import itertools
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
# The same for a group of shards at once: one (table, result) per table, in order.
GroupFn = Callable[[list[pa.Table]], list[tuple[pa.Table, Any]]]

# Grouping keeps at least this many tasks per worker, so the last tasks still balance the workers.
TASKS_PER_WORKER = 8


@dataclass(frozen=True)
class _EachShard:
    """A ShardFn as a GroupFn."""

    fn: ShardFn

    def __call__(self, tables: list[pa.Table]) -> list[tuple[pa.Table, Any]]:
        return [self.fn(table) for table in tables]


@dataclass(frozen=True)
class _GroupJob:
    """Picklable worker: read every `src` of the group, apply `fn` to them together, write each `dst`, return
    the shards' results."""

    fn: GroupFn

    def __call__(self, paths: tuple[tuple[Path, Path], ...]) -> list[Any]:
        tables = [read_shard(src) for src, _ in paths]
        done = self.fn(tables)
        if len(done) != len(tables):
            raise ValueError(f"the group function gave {len(done)} tables for {len(tables)} shards")
        results = []
        for (_, dst), (table, result) in zip(paths, done, strict=False):  # lengths checked above
            write_shard(table, dst)
            results.append(result)
        return results


def task_sizes(shard_bytes: Sequence[int], parallel: int | None, most: int, most_bytes: int) -> list[int]:
    """How many consecutive shards each task takes, in order: up to `most` while each of `parallel` workers
    still gets TASKS_PER_WORKER tasks, fewer where their files would pass `most_bytes` together (a larger shard
    is a task alone), so a task's memory stays bounded; one each where the parallelism is unknown."""
    group = 1 if parallel is None else min(most, len(shard_bytes) // (TASKS_PER_WORKER * max(1, parallel)))
    sizes: list[int] = []
    count = held = 0
    for size in shard_bytes:
        if count and (count >= group or held + size > most_bytes):
            sizes.append(count)
            count = held = 0
        count, held = count + 1, held + size
    return [*sizes, count] if count else sizes


def sum_counts(per_shard: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum count dicts key by key, nested dicts included; a key missing from a shard counts as 0."""
    total: dict[str, Any] = {}
    for counts in per_shard:
        _add_into(total, counts)
    return total


def _add_into(total: dict[str, Any], counts: Mapping[str, Any]) -> None:
    # In place: copying the running total at every level for every shard made the sum grow with the shards
    # times the total's size (0.1 s in the parent for 80 shards of per-language counts).
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
    return transform_shard_groups(shards, out_dir, _EachShard(fn), executor, desc, cache, [1] * len(shards))


def transform_shard_groups(
    shards: Sequence[Path], out_dir: Path, fn: GroupFn, executor: Executor, desc: str, cache: WorkCache,
    sizes: Sequence[int],
) -> list[Any]:
    """`transform_shards` with `fn` given consecutive shards together, `sizes[k]` of them in task k (a fixed cost
    per call, such as planning a query, is then paid once a task); the shards and results are the same for any
    sizes (`task_sizes` chooses them)."""
    if sum(sizes) != len(shards) or min(sizes, default=1) < 1:
        raise ValueError(f"task sizes {list(sizes)} do not cover the {len(shards)} shards")
    starts = [0, *itertools.accumulate(sizes)][:-1]
    with atomic_output(out_dir) as tmp:
        tasks = [tuple((Path(src), tmp / Path(src).name) for src in shards[start:start + size])
                 for start, size in zip(starts, sizes, strict=True)]
        keys = cache.group_keys([[src for src, _ in task] for task in tasks])
        per_task = cache.map(executor, _GroupJob(fn), tasks, keys, outputs=[[dst for _, dst in task] for task in tasks],
                             desc=desc, labels=[", ".join(str(src) for src, _ in task) for task in tasks])
    cache.finish()
    return [result for results in per_task for result in results]
