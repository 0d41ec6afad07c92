"""executor=ray on a local Ray of 2 CPUs: the data stages' bytes equal the local executor's; faults handled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from starbuild.clean.stage import run_clean
from starbuild.core import layout
from starbuild.dedup.stage import run_dedup
from starbuild.executors import TaskFailed, make_executor
from starbuild.filters.stage import run_filter
from starbuild.format.stage import run_format
from starbuild.swh.stage import run_pull
from starbuild.tokenizer.stage import run_tokenizer
from starbuild.tokenizer.tokenize_stage import run_tokenize
from tests.factories import code_only, file_bytes, stage_context

ray = pytest.importorskip("ray", reason="executor=ray needs the `ray` extra (pip install 'starbuild[ray]')")

from starbuild.executors.ray import RayExecutor  # noqa: E402

STAGES = (run_pull, run_filter, run_dedup, run_clean, run_format, run_tokenizer, run_tokenize)
OUTS = (layout.RAW, layout.FILTERED, layout.DEDUP, layout.DEDUP_CLUSTERS, layout.CLEAN, layout.DECONTAMINATED,
        layout.DOCS, layout.TOKENIZER, layout.TOKENS,
        *(layout.metrics_file(stage) for stage in ("pull", "filter", "dedup", "clean", "format", "tokenize")))
RAY_SECTION = {"_target_": "starbuild.executors.ray.RayExecutor", "num_cpus": 2, "max_in_flight": 3}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray of 2 CPUs for the module; this module's helpers travel to its workers by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    RayExecutor(num_cpus=2).connect()
    yield
    ray.shutdown()


def build(root: Path, executor: list[str]) -> dict[str, bytes]:
    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    # One document per docs shard, so tokenize too has several tasks whose order matters.
    cfg = code_only(compose(["experiment=smoke", "format.docs_per_shard=1", *executor], conf_dir=REPO_ROOT / "conf"))
    for stage in STAGES:
        stage(stage_context(stage.__name__.removeprefix("run_"), cfg, root))
    return file_bytes(root, *OUTS)


def test_data_stages_on_ray_write_the_local_bytes(local_ray: None, tmp_path: Path) -> None:
    local = build(tmp_path / "local", ["executor=local", "executor.workers=2"])
    on_ray = build(tmp_path / "ray", ["executor=ray", "executor.num_cpus=2", "executor.max_in_flight=3"])
    assert on_ray == local
    assert sum(name.startswith("data/filtered/") for name in local) >= 2, "several shards, so order matters"
    assert sum(name.startswith("data/docs/train/") for name in local) >= 2


def die_once(task: tuple[str, int]) -> tuple[int, int]:
    """Kill this worker the first time a task runs (a marker file says it happened), then succeed."""
    marker, value = task
    if value == 3 and not os.path.exists(marker):
        Path(marker).write_text("killed")
        os.kill(os.getpid(), 9)
    return value * value, os.getpid()


def fail_on_two(value: int) -> int:
    if value == 2:
        raise ValueError("shard two is broken\nbeyond repair")
    return value


def test_a_killed_worker_is_retried(local_ray: None, tmp_path: Path) -> None:
    marker = str(tmp_path / "killed-once")
    results = RayExecutor(max_retries=2).map(die_once, [(marker, i) for i in range(6)], desc="test")
    assert [square for square, _ in results] == [i * i for i in range(6)]
    assert Path(marker).read_text() == "killed" and os.getpid() not in {pid for _, pid in results}


def test_a_task_that_always_fails_names_its_shard(local_ray: None) -> None:
    labels = [f"data/raw/part-{i:05d}.parquet" for i in range(5)]
    with pytest.raises(TaskFailed) as caught:
        RayExecutor(max_in_flight=2).map(fail_on_two, list(range(5)), desc="filter", labels=labels)
    assert str(caught.value) == ("filter: data/raw/part-00002.parquet failed: ValueError: shard two is broken / "
                                 "beyond repair")


def test_the_conf_file_builds_it_and_bad_values_are_named() -> None:
    from omegaconf import OmegaConf

    from tests.conftest import REPO_ROOT

    executor = make_executor(OmegaConf.load(REPO_ROOT / "conf" / "executor" / "ray.yaml"))
    assert isinstance(executor, RayExecutor) and executor.address is None
    with pytest.raises(Exception, match="max_in_flight must be an integer >= 1"):
        make_executor({**RAY_SECTION, "max_in_flight": 0})


def test_without_ray_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'starbuild\[ray\]'"):
        RayExecutor(num_cpus=1).map(fail_on_two, [1], desc="x")
