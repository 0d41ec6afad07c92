"""`RayExecutor`: shard tasks as Ray tasks on a Ray cluster (`conf/executor/ray.yaml`, the `ray` extra)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm import tqdm

from starbuild.executors import Executor, TaskFailed, task_labels

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor=ray needs Ray: pip install 'starbuild[ray]' (or `pip install ray`)") from err
    return ray


def _call(fn: Callable[[T], R], task: T) -> R:
    return fn(task)


@dataclass(frozen=True)
class RayExecutor(Executor):
    """Each task a Ray task: at most `max_in_flight` submitted at once, results in task order.

    A task whose worker dies (killed, out of memory, node lost) is retried by Ray up to `max_retries`
    times; an exception raised by the task itself is retried only with `retry_exceptions` (the shard
    functions are deterministic, so by default it fails the stage at once, naming the shard).
    """

    # A running cluster (`ray://head:10001`, `auto`); null starts a local Ray of `num_cpus` CPUs.
    address: str | None = None
    num_cpus: int | None = None
    # Tasks submitted and not yet finished, at most; null = twice the cluster's CPUs.
    max_in_flight: int | None = None
    max_retries: int = 3
    retry_exceptions: bool = False
    # Ray's scheduling strategy for the tasks: SPREAD puts shards on every node of a cluster, DEFAULT packs.
    scheduling_strategy: str = "SPREAD"

    def __post_init__(self) -> None:
        for key in ("num_cpus", "max_in_flight"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be an integer >= 1 or null, got {value!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.scheduling_strategy not in ("SPREAD", "DEFAULT"):
            raise ValueError(f"scheduling_strategy must be SPREAD or DEFAULT, got {self.scheduling_strategy!r}")

    def parallel_tasks(self) -> int | None:
        """The CPUs of a Ray started here (`num_cpus`, else this machine's); a running cluster's are known only
        once connected."""
        return None if self.address else self.num_cpus or os.cpu_count()

    def connect(self) -> Any:
        """The `ray` module, connected to the cluster (started locally when no address is given)."""
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            log.info("ray: %s CPUs in the cluster", ray.cluster_resources().get("CPU"))
        return ray

    def map(
        self, fn: Callable[[T], R], tasks: Sequence[T], desc: str, labels: Sequence[str] | None = None,
        in_threads: bool = False,
    ) -> list[R]:
        """`fn(task)` for every task, in task order, with a progress bar (tasks are Ray tasks, `in_threads` or not)."""
        names = task_labels(tasks, labels)
        if not tasks:
            return []
        ray = self.connect()
        remote = ray.remote(_call).options(max_retries=self.max_retries, retry_exceptions=self.retry_exceptions,
                                           scheduling_strategy=self.scheduling_strategy)
        limit = self.max_in_flight or max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
        fn_ref = ray.put(fn)
        results: dict[int, R] = {}
        pending: dict[Any, int] = {}
        upcoming = iter(range(len(tasks)))
        with tqdm(total=len(tasks), desc=desc, unit="shard") as bar:
            try:
                for index in upcoming:
                    pending[remote.remote(fn_ref, tasks[index])] = index
                    if len(pending) >= limit:
                        break
                while pending:
                    [ready], _ = ray.wait(list(pending), num_returns=1)
                    index = pending.pop(ready)
                    try:
                        results[index] = ray.get(ready)
                    except Exception as err:
                        raise TaskFailed(desc, names[index], _cause(err)) from err
                    bar.update()
                    following = next(upcoming, None)
                    if following is not None:
                        pending[remote.remote(fn_ref, tasks[following])] = following
            except BaseException:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
        return [results[index] for index in range(len(tasks))]


def _cause(error: BaseException) -> BaseException:
    """The task's own exception inside Ray's wrapper (RayTaskError), else Ray's error (a dead worker)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error
