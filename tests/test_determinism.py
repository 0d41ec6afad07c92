"""Training bytes depend on the runtime params, not on the machine's threads or instruction set.

Each run is the train stage by hand in its own process, with the environment another machine might
have; the stage pins threads and CPU kernels itself (starbuild.determinism), so the checkpoint md5s
must all agree, while changing the declared params does change them (the pinning is not vacuous).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from starbuild.core import layout
from tests.conftest import REPO_ROOT
from tests.test_train import hand_run_project

pytestmark = pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability().lower() not in {"avx2", "avx512"},
    reason="the default runtime.cpu_isa=avx2 needs an x86 CPU with AVX2",
)

OTHER_MACHINES = {
    "one_thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "no_simd": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx512_dynamic": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "MKL_DYNAMIC": "TRUE",
                       "OMP_NUM_THREADS": "3"},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conf/, stages/ and dvc.yaml with smoke-sized data/tokens, for hand runs of the train stage."""
    return hand_run_project(tmp_path_factory.mktemp("project"))


def train_md5(project: Path, name: str, env: dict[str, str], *overrides: str) -> str:
    """Train the smoke model by hand into runs/<name> under `env`; return the weights' md5."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "ATEN_", "ONEDNN_"))}
    result = subprocess.run(
        [sys.executable, "stages/train.py", "experiment=smoke", "trainer.max_steps=12", "trainer.val_check_interval=6",
         f"hydra.run.dir=runs/{name}", *overrides],
        cwd=project, env={**clean, "PYTHONPATH": str(REPO_ROOT / "src"), **env}, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    weights = project / "runs" / name / layout.CHECKPOINTS / "model.safetensors"
    return hashlib.md5(weights.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(project: Path) -> str:
    """The weights' md5 of a run under this process's environment (OMP_*, MKL_*, … removed)."""
    return train_md5(project, "reference", {})


def test_checkpoint_is_the_same_whatever_the_environment_says(project: Path, reference: str) -> None:
    for name, env in OTHER_MACHINES.items():
        assert train_md5(project, name, env) == reference, f"the environment {env} changed the weights"


@pytest.mark.parametrize("override", ["runtime.threads=1", "runtime.cpu_isa=default"])
def test_the_declared_runtime_params_do_change_the_numbers(project: Path, reference: str, override: str) -> None:
    assert train_md5(project, override.replace("=", "_"), {}, override) != reference


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_pin_overrides_ambient_threads_and_kernels() -> None:
    code = (
        "import torch; from starbuild.determinism import RuntimeConfig, environment, pin; "
        "pin(RuntimeConfig(threads=2, cpu_isa='avx2')); "
        "print(torch.get_num_threads(), environment()['cpu_isa'], environment()['deterministic'])"
    )
    result = run_python(code, {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "avx2", "True"]


def test_mkl_runs_its_vendor_independent_branch_whatever_the_environment_says() -> None:
    # MKL's AVX2/AVX-512 branches give the same bits only across Intel CPUs; a lock built on Intel must
    # rebuild on AMD, so MKL must report the COMPATIBLE branch for every cpu_isa.
    widths = ["default", "avx2", "avx512"]
    for isa in widths[: widths.index(torch.backends.cpu.get_cpu_capability().lower()) + 1]:
        code = (
            "import torch; from starbuild.determinism import RuntimeConfig, pin; "
            f"pin(RuntimeConfig(threads=2, cpu_isa='{isa}')); torch.ones(8, 64) @ torch.ones(64, 8)"
        )
        result = run_python(code, {"MKL_CBWR": "AVX2,STRICT", "MKL_VERBOSE": "1"})
        assert result.returncode == 0, result.stderr
        calls = [line for line in result.stdout.splitlines() if "SGEMM" in line]
        assert calls, result.stdout
        assert all("CNR:COMPATIBLE" in line for line in calls), calls


def test_pinning_after_torch_already_computed_fails_clearly() -> None:
    code = (
        "import torch; from starbuild.determinism import RuntimeConfig, pin; "
        "torch.ones(64).exp().sum(); pin(RuntimeConfig(threads=2, cpu_isa='avx2'))"
    )
    result = run_python(code, {"ATEN_CPU_CAPABILITY": "default"})
    assert result.returncode != 0
    assert "PinError: CPU kernels run as default, not runtime.cpu_isa=avx2" in result.stderr
