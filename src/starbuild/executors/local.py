"""`LocalExecutor`: this process and a process pool on this machine (`conf/executor/local.yaml`), or threads for
GIL-free tasks."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor as PoolExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm import tqdm

from starbuild.executors import Executor, TaskFailed, task_labels

T = TypeVar("T")
R = TypeVar("R")

# Imported once by the forkserver, so every worker starts with them loaded instead of importing them
# again (measured ~0.2 s of CPU per worker). Only modules that start no runtime threads at import:
# never go-enry (a Go runtime), torch or tokenizers.
FORKSERVER_PRELOAD = ["numpy", "pyarrow", "pyarrow.compute", "pyarrow.parquet", "xxhash", "numba"]


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """`workers` tasks at a time: this process and `workers - 1` worker processes (threads for `in_threads`
    work), each taking the next task as it is free; `workers: 1` runs every task in this process."""

    workers: int

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")

    def threads_per_task(self, tasks: int) -> int:
        """This machine's cores shared by the tasks that run at once."""
        return max(1, (os.cpu_count() or 1) // max(1, min(self.workers, tasks)))

    def parallel_tasks(self) -> int:
        """`workers`."""
        return self.workers

    def map(
        self, fn: Callable[[T], R], tasks: Sequence[T], desc: str, labels: Sequence[str] | None = None,
        in_threads: bool = False,
    ) -> list[R]:
        """`fn(task)` for every task, in task order, with a progress bar; `in_threads`: in threads of this process."""
        names = task_labels(tasks, labels)
        workers = min(self.workers, len(tasks))
        if workers <= 1:
            results = []
            for task, label in zip(tqdm(tasks, desc=desc, unit="shard"), names, strict=True):
                try:
                    results.append(fn(task))
                except Exception as err:
                    raise TaskFailed(desc, label, err) from err
            return results
        if in_threads:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return _collect(pool, fn, tasks, names, desc)
        # Not fork: the parent may hold threaded runtimes (go-enry's Go runtime, torch, tokenizers) that a
        # forked child inherits half-alive and can deadlock in. The forkserver starts workers clean.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(FORKSERVER_PRELOAD)
        with _script_not_rerun(fn), ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
            return _share(pool, workers - 1, fn, tasks, names, desc)


@contextlib.contextmanager
def _script_not_rerun(fn: Callable) -> Iterator[None]:
    """Start workers without running the parent's script again in each (what multiprocessing does so that
    functions defined in it unpickle): a stage script's imports (Hydra, the stage module) cost ~0.2 s a
    worker, and every task function lives in an importable module. Kept when `fn` is the script's own."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if script is None or getattr(main, "__spec__", None) is not None or _refers_to_script(fn):
        yield
        return
    del main.__file__  # multiprocessing reads it when it starts each worker, within `submit`
    try:
        yield
    finally:
        main.__file__ = script


def _refers_to_script(fn: Callable) -> bool:
    """Whether unpickling `fn` (or what it wraps, as the work cache wraps task functions) needs the script."""
    try:
        return b"__main__" in pickle.dumps(fn)
    except Exception:  # unpicklable: let the pool report it as it would
        return True


def _share(pool: PoolExecutor, pool_workers: int, fn: Callable[[T], R], tasks: Sequence[T], names: list[str],
           desc: str) -> list[R]:
    """Every task run by this process or one of `pool`'s, whichever is free, in task order; a failure stops
    the handing out of tasks, and the lowest failed task is the one reported.

    This process takes tasks too: it has every import loaded already and starts at once, while the workers
    start up (the forkserver, then each worker's imports: tenths of a second of a short stage)."""
    results: list[Any] = [None] * len(tasks)
    failures: dict[int, BaseException] = {}
    stop = threading.Event()
    order = itertools.count()
    lock = threading.Lock()
    progress = tqdm(total=len(tasks), desc=desc, unit="shard")

    def claim() -> int | None:
        with lock:
            index = next(order)
        return None if stop.is_set() or index >= len(tasks) else index

    def work(run: Callable[[T], R]) -> None:
        while (index := claim()) is not None:
            try:
                results[index] = run(tasks[index])
            except BaseException as err:
                failures[index] = err
                stop.set()
                return
            progress.update()

    def in_pool(task: T) -> R:
        return pool.submit(fn, task).result()

    feeders = [threading.Thread(target=work, args=(in_pool,), daemon=True) for _ in range(pool_workers)]
    for feeder in feeders:
        feeder.start()
    try:
        work(fn)
    except BaseException:  # an interrupt between tasks: hand out no more
        stop.set()
        raise
    finally:
        for feeder in feeders:  # each waits for the task its worker is running
            feeder.join()
        progress.close()
    if failures:
        first = min(failures)
        if not isinstance(failures[first], Exception):  # KeyboardInterrupt or SystemExit: not the task's fault
            raise failures[first]
        raise TaskFailed(desc, names[first], failures[first]) from failures[first]
    return results


def _collect(pool: PoolExecutor, fn: Callable[[T], R], tasks: Sequence[T], names: list[str], desc: str) -> list[R]:
    """Submit every task to `pool` and gather the results in task order; the first failure cancels the rest."""
    futures = [pool.submit(fn, task) for task in tasks]
    try:
        results = []
        for future, label in zip(tqdm(futures, desc=desc, unit="shard"), names, strict=True):
            try:
                results.append(future.result())
            except Exception as err:
                raise TaskFailed(desc, label, err) from err
        return results
    except BaseException:
        # Fail fast: tasks not yet started would only delay the error.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
