"""Training on two CPU processes (`trainer.strategy=ddp`) follows the single-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from starbuild.core import layout
from tests.conftest import REPO_ROOT
from tests.test_train import hand_run_project, read_curve

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conf/, stages/ and dvc.yaml with smoke-sized data/tokens, for hand runs of the train stage."""
    return hand_run_project(tmp_path_factory.mktemp("ddp"))


def train(project: Path, name: str, *overrides: str) -> tuple[Path, str]:
    """Train the smoke model by hand into runs/<name>; return that directory and the run's output."""
    result = subprocess.run(
        [sys.executable, "stages/train.py", "experiment=smoke", "trainer.max_steps=12", "trainer.val_check_interval=6",
         f"hydra.run.dir=runs/{name}", *overrides],
        cwd=project, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return project / "runs" / name, result.stdout + result.stderr


def test_two_processes_train_like_one_with_the_same_global_batch(project: Path) -> None:
    one, _ = train(project, "one", "train.batch_size=4")
    two, output = train(project, "two", "train.batch_size=2", "trainer.strategy=ddp", "trainer.devices=2")
    assert "Starting with 2 processes" in output
    for curve in ("train_loss.csv", "val_loss.csv"):
        single, double = (read_curve(run / layout.PLOTS / curve) for run in (one, two))
        assert [step for step, _ in single] == [step for step, _ in double]
        for (_, a), (_, b) in zip(single, double, strict=True):
            assert a == pytest.approx(b, abs=1e-5), curve
    weights = [load_file(run / layout.CHECKPOINTS / "model.safetensors") for run in (one, two)]
    for name, tensor in weights[0].items():
        assert (tensor - weights[1][name]).abs().max() < 1e-4, name
    seen = [json.loads((run / layout.metrics_file("train")).read_text())["tokens_seen"] for run in (one, two)]
    assert seen[0] == seen[1] == 12 * 4 * 64
    # Only the first process wrote: one set of outputs, no stray temporary directories.
    assert not list(two.rglob(".tmp-*"))
