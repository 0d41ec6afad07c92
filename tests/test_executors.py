"""Executors: results in task order, one-line errors naming the failing task, built from conf/executor/."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from starbuild.core.stage import StageError
from starbuild.executors import Executor, TaskFailed, make_executor
from starbuild.executors.local import LocalExecutor
from tests.conftest import REPO_ROOT


def slow_square(x: int) -> tuple[int, int, int]:
    # Earlier tasks sleep longer, so with 2 workers they finish after later ones.
    time.sleep(0.02 * (6 - x) if x < 6 else 0)
    return x * x, os.getpid(), threading.get_ident()


def fail_on_three(path: str) -> str:
    if path.endswith("part-00003.parquet"):
        raise ValueError("bad row group\nat offset 7")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_task_order(workers):
    results = LocalExecutor(workers=workers).map(slow_square, list(range(10)), desc="test")
    assert [square for square, _, _ in results] == [x * x for x in range(10)]
    if workers == 1:
        assert {pid for _, pid, _ in results} == {os.getpid()}


def meet(task: tuple[str, int]) -> int:
    """Leave this process's pid in the task's folder and wait until another process has left one there."""
    folder, _ = task
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).iterdir())) < 2:
        assert time.monotonic() < deadline, "no other process took a task within 60 s"
        time.sleep(0.01)
    return os.getpid()


def test_this_process_and_the_workers_share_the_tasks(tmp_path):
    # Each task waits for a second process to hold a task at the same time: only two runners can finish.
    pids = LocalExecutor(workers=2).map(meet, [(str(tmp_path), i) for i in range(6)], desc="test")
    assert os.getpid() in pids and len(set(pids)) == 2


def test_gil_free_work_runs_in_threads_of_this_process():
    results = LocalExecutor(workers=2).map(slow_square, list(range(10)), desc="test", in_threads=True)
    assert [square for square, _, _ in results] == [x * x for x in range(10)]
    assert {pid for _, pid, _ in results} == {os.getpid()}
    assert len({thread for _, _, thread in results} - {threading.get_ident()}) == 2


def test_no_tasks_and_more_workers_than_tasks():
    assert LocalExecutor(workers=4).map(slow_square, [], desc="test") == []
    assert LocalExecutor(workers=8).map(slow_square, [6, 7], desc="test")[1][0] == 49


@pytest.mark.parametrize(("workers", "in_threads"), [(1, False), (2, False), (2, True)])
def test_a_failing_task_is_one_line_naming_it(workers, in_threads):
    paths = [f"data/raw/part-{i:05d}.parquet" for i in range(6)]
    with pytest.raises(TaskFailed) as caught:
        LocalExecutor(workers=workers).map(fail_on_three, paths, desc="filter", labels=paths, in_threads=in_threads)
    assert isinstance(caught.value, StageError)
    assert str(caught.value) == "filter: data/raw/part-00003.parquet failed: ValueError: bad row group / at offset 7"
    assert isinstance(caught.value.__cause__, ValueError)


def test_labels_default_to_the_task_index_and_must_match_the_tasks():
    with pytest.raises(TaskFailed, match=r"^x: task 1 failed: ValueError"):
        LocalExecutor(workers=1).map(fail_on_three, ["a", "part-00003.parquet"], desc="x")
    with pytest.raises(ValueError, match="1 labels for 2 tasks"):
        LocalExecutor(workers=1).map(fail_on_three, ["a", "b"], desc="x", labels=["a"])


def test_every_conf_file_builds_an_executor():
    files = sorted((REPO_ROOT / "conf" / "executor").glob("*.yaml"))
    assert files
    for path in files:
        assert isinstance(make_executor(OmegaConf.load(path)), Executor), path
    assert make_executor({"_target_": "starbuild.executors.local.LocalExecutor", "workers": 3}) == LocalExecutor(3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"_target_": "starbuild.executors.spark.SparkExecutor"},
         r"cannot import executor\._target_ 'starbuild\.executors\.spark\.SparkExecutor'"),
        ({"_target_": "collections.OrderedDict"}, r"'collections\.OrderedDict' is not an Executor class"),
        ({"name": "local", "workers": 2}, r"has no `_target_`"),
        ({"_target_": "starbuild.executors.local.LocalExecutor", "workers": 0}, r"executor\.workers must be"),
        ({"_target_": "starbuild.executors.local.LocalExecutor", "workers": 2, "threads": 1},
         r"unexpected keyword argument 'threads'"),
    ],
)
def test_a_bad_executor_section_names_the_choices_and_the_file(monkeypatch, section, message):
    monkeypatch.chdir(REPO_ROOT)  # make_executor finds conf/executor/ from the working directory
    with pytest.raises(StageError, match=message) as caught:
        make_executor(OmegaConf.create(section))
    text = str(caught.value)
    assert "\n" not in text
    choices = ", ".join(sorted(p.stem for p in (REPO_ROOT / "conf" / "executor").glob("*.yaml")))
    assert text.endswith(f"or choose another executor: {choices}")
    assert "fix conf/executor/" in text


def test_the_file_to_fix_is_the_one_holding_the_bad_target(monkeypatch, tmp_path):
    conf = tmp_path / "conf" / "executor"
    conf.mkdir(parents=True)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (conf / "local.yaml").write_text("_target_: starbuild.executors.local.LocalExecutor\nworkers: 2\n")
    (conf / "cluster.yaml").write_text("_target_: starbuild.executors.cluster.Cluster\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError, match=r"fix conf/executor/cluster\.yaml or choose another executor: cluster, local"):
        make_executor(OmegaConf.load(conf / "cluster.yaml"))


SCRIPT = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"{os.getpid()}.ran").touch()  # every process that runs this script leaves its pid
from starbuild.executors.local import LocalExecutor

def own_task(x):
    time.sleep(0.2)  # long enough that every worker is started and takes a task
    return x + 1

if __name__ == "__main__":
    import functools
    # str: a function that lives in a module; a partial wraps the script's own function, as the work cache does.
    fn = {"own": own_task, "wrapped": functools.partial(own_task), "module": str}[sys.argv[2]]
    LocalExecutor(3).map(fn, [0, 1, 2, 3, 4, 5], desc="t")  # this process and two workers
"""


def test_workers_do_not_run_the_parents_script_again_unless_the_task_is_defined_in_it(tmp_path):
    # A stage script's imports cost ~0.2 s a worker; only a task function defined in the script needs them.
    script = tmp_path / "stage_script.py"
    script.write_text(SCRIPT)
    for mode, runs in (("module", 1), ("own", 3), ("wrapped", 3)):
        marks = tmp_path / mode
        marks.mkdir()
        done = subprocess.run([sys.executable, str(script), str(marks), mode], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(list(marks.glob("*.ran"))) == runs, mode
