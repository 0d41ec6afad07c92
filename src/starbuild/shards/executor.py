"""Run one function over many shard tasks: a local process pool, results in task order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

KNOWN_EXECUTORS = ("local",)


def map_shards(
    fn: Callable[[T], R], tasks: Sequence[T], executor: Any, desc: str = "shards"
) -> list[R]:
    """Apply `fn` to every task and return the results in task order, whatever finishes first.

    `executor` is the composed `executor` config section (`name`, `workers`).
    """
    name = executor["name"]
    if name not in KNOWN_EXECUTORS:
        raise SystemExit(
            f"error: executor '{name}' is not available; use one of {', '.join(KNOWN_EXECUTORS)} "
            "(conf/executor/)"
        )
    workers = max(1, min(int(executor["workers"]), len(tasks)))
    if workers == 1:
        return [fn(task) for task in tqdm(tasks, desc=desc, unit="shard")]
    # fork is safe here: shard workers import no threaded runtime (torch, tokenizers).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(tqdm(pool.map(fn, tasks), total=len(tasks), desc=desc, unit="shard"))
