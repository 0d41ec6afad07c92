"""Executors: run one function over many tasks and return the results in task order.

An executor is chosen by the `executor` config section, a Hydra `_target_` node built by
`make_executor`: `conf/executor/local.yaml` names `starbuild.executors.local.LocalExecutor`. A new
executor is one module here (an `Executor` subclass) and one file in conf/executor/.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from starbuild.core.config import ConfigError, find_repo_root, locate
from starbuild.core.stage import StageError

T = TypeVar("T")
R = TypeVar("R")


class TaskFailed(StageError):
    """One task raised inside an executor; the one-line message names the task and the error."""

    def __init__(self, desc: str, label: str, error: BaseException) -> None:
        super().__init__(f"{desc}: {label} failed: {describe(error)}")
        self.label = label


def describe(error: BaseException) -> str:
    """`ExcType: message` on one line, whatever newlines the message holds."""
    message = " / ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def task_labels(tasks: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    """The label of every task for error messages: `labels` as given, else `task <index>`."""
    if labels is None:
        return [f"task {i}" for i in range(len(tasks))]
    if len(labels) != len(tasks):
        raise ValueError(f"{len(labels)} labels for {len(tasks)} tasks")
    return [str(label) for label in labels]


class Executor(ABC):
    """Runs a picklable function over tasks; the same results (and bytes downstream) on any executor."""

    @abstractmethod
    def map(
        self, fn: Callable[[T], R], tasks: Sequence[T], desc: str, labels: Sequence[str] | None = None,
        in_threads: bool = False,
    ) -> list[R]:
        """`fn(task)` for every task, in task order; a task that raises becomes TaskFailed naming its label.

        `in_threads` says `fn` is thread-safe and spends its time in code that releases the GIL (numba
        `nogil` loops, Arrow, DuckDB): an executor on this machine may then run it in threads instead of
        processes, sparing the workers' start-up (a pool, imports, compiled code loaded again).
        """

    def threads_per_task(self, tasks: int) -> int:
        """Threads one of `tasks` tasks may give a multithreaded engine (DuckDB) without oversubscribing: one
        where each task is given one CPU, as on Ray."""
        return 1

    def parallel_tasks(self) -> int | None:
        """How many tasks run at once, where this executor knows it before it starts (None: it does not)."""
        return None


def _conf_executor_dir() -> Path | None:
    """conf/executor/ of the repository around the working directory, if there is one."""
    try:
        return find_repo_root() / "conf" / "executor"
    except ConfigError:
        return None


def _conf_file_naming(target: object, folder: Path | None) -> str:
    """The conf/executor/ file whose `_target_` is `target` (the file to fix), else the folder."""
    if folder is None:
        return "conf/executor/"
    for path in sorted(folder.glob("*.yaml")):
        try:
            holds_target = OmegaConf.load(path).get("_target_") == target
        except Exception:  # a file that does not even parse is not the one to name here
            continue
        if holds_target:
            return f"conf/executor/{path.name}"
    return "conf/executor/ (or the executor override)"


def _build(node: Any) -> Executor:
    """Instantiate `node`; ValueError with a one-line reason when it cannot be built."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not isinstance(target, str):
        raise ValueError("the executor section has no `_target_`")
    try:
        cls = locate(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import executor._target_ '{target}' ({describe(err)})") from err
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ValueError(f"executor._target_ '{target}' is not an Executor class")
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        # An executor's own checks start their message with the argument's name.
        detail = f"executor.{cause}" if type(cause) is ValueError else f"executor: {describe(cause)}"
        raise ValueError(detail) from err


def make_executor(section: Any) -> Executor:
    """Build the `executor` config section (`_target_` plus its arguments); StageError names the fix."""
    node = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else section
    try:
        return _build(node)
    except ValueError as err:
        folder = _conf_executor_dir()
        choices = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) if folder else "?"
        target = node.get("_target_") if isinstance(node, Mapping) else None
        raise StageError(
            f"{err}; fix {_conf_file_naming(target, folder)} or choose another executor: {choices}"
        ) from err
