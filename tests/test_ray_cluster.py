"""executor=ray on an existing cluster of two nodes (two raylets on loopback): the stage's bytes are the local ones."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from starbuild.core import layout
from starbuild.filters.stage import run_filter
from starbuild.swh.stage import run_pull
from tests.factories import file_bytes, stage_context

ray = pytest.importorskip("ray", reason="executor=ray needs the `ray` extra (pip install 'starbuild[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

from starbuild.executors.ray import RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A Ray cluster of a head and one more node, 1 CPU each, started here; its address."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def node_of(task: int) -> tuple[int, str]:
    import time

    time.sleep(0.2)  # as long as a small shard: spreading is best effort, and instant tasks may all fit one node
    return os.getpid(), ray.get_runtime_context().get_node_id()


def test_tasks_spread_over_both_nodes(two_nodes: str) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    results = RayExecutor(address=two_nodes).map(node_of, list(range(8)), desc="test")
    assert len(ray.nodes()) == 2 and len({node for _, node in results}) == 2


def test_stages_on_the_cluster_write_the_local_bytes(two_nodes: str, tmp_path: Path) -> None:
    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    outs = (layout.RAW, layout.FILTERED, layout.metrics_file("pull"), layout.metrics_file("filter"))
    found = {}
    runs = {"local": ["executor=local"], "cluster": ["executor=ray", f"executor.address={two_nodes}"]}
    for name, executor in runs.items():
        cfg = compose(["experiment=smoke", *executor], conf_dir=REPO_ROOT / "conf")
        for stage in (run_pull, run_filter):
            stage(stage_context(stage.__name__.removeprefix("run_"), cfg, tmp_path / name))
        found[name] = file_bytes(tmp_path / name, *outs)
    assert found["cluster"] == {key.replace("local", "cluster"): value for key, value in found["local"].items()}
