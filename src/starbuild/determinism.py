"""Pin what torch's numbers depend on besides the inputs: thread count, CPU instruction set, algorithms.

Parallel reductions split their sums by the thread count, and ATen, MKL and oneDNN pick kernels of
different vector widths per CPU: left alone, a checkpoint depends on the machine. `pin` fixes both
from the `runtime` section before any torch work, overriding whatever the environment says
(OMP_NUM_THREADS, MKL_CBWR, ATEN_CPU_CAPABILITY, ...), so on any x86 CPU with that instruction set the
bytes depend only on declared params and deps. MKL runs its COMPATIBLE branch whatever `cpu_isa`
says: its AVX2 and AVX-512 branches are reproducible only across Intel CPUs (on AMD, MKL ignores them
and picks its own kernels), while ATen's and oneDNN's kernels are the same instructions on either
vendor. The libraries read these variables when they first compute, not when they are imported,
which `pin` checks for ATen. On a GPU, bit-identity holds only
for the same GPU model and software (deterministic algorithms, a fixed cuBLAS workspace).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from starbuild import cores
from starbuild.core.stage import StageContext, StageError

# runtime.cpu_isa -> (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA).
CPU_ISA_ENV = {
    "default": ("default", "SSE41"),
    "avx2": ("avx2", "AVX2"),
    "avx512": ("avx512", "AVX512_CORE"),
}
# The only MKL branch whose bits are the same on Intel and AMD CPUs (MKL's CNR documentation).
MKL_BRANCH = "COMPATIBLE"
# cuBLAS is deterministic only with a fixed workspace (torch.use_deterministic_algorithms).
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class RuntimeConfig:
    """The `runtime` config section: how torch stages compute."""

    # Threads of every CPU parallel region (the result depends on it, not on the cores present).
    threads: int
    # The widest x86 instruction set CPU kernels may use: default (SSE), avx2 or avx512.
    cpu_isa: str

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be ≥ 1, got {self.threads}")
        if self.cpu_isa not in CPU_ISA_ENV:
            raise ValueError(f"cpu_isa must be one of {', '.join(CPU_ISA_ENV)}, got {self.cpu_isa!r}")


class PinError(RuntimeError):
    """The pinned numerics could not take effect on this machine; the message names the fix."""


def pin(config: RuntimeConfig, device: str = "cpu") -> None:
    """Fix threads, CPU kernels and (on CUDA) cuBLAS for this process; call before any torch work."""
    aten, onednn = CPU_ISA_ENV[config.cpu_isa]
    os.environ.update({
        "ATEN_CPU_CAPABILITY": aten,
        "MKL_CBWR": MKL_BRANCH,
        "ONEDNN_MAX_CPU_ISA": onednn,
        # MKL would otherwise use fewer threads than asked when it sees fit.
        "MKL_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": str(config.threads),
        "MKL_NUM_THREADS": str(config.threads),
    })
    if device.startswith("cuda"):
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        torch.backends.cudnn.benchmark = False
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    active = torch.backends.cpu.get_cpu_capability().lower()
    if active != aten:
        raise PinError(
            f"CPU kernels run as {active}, not runtime.cpu_isa={config.cpu_isa}: this CPU lacks it, or torch "
            f"computed before the stage pinned it; set runtime.cpu_isa to one this CPU has (every result changes)"
        )


@contextlib.contextmanager
def pinned(ctx: StageContext, device: str) -> Iterator[None]:
    """Run the block with this stage's numerics pinned from its `runtime` section and its CPU cores reserved
    (given back after it, so the next job gets them); a failure to pin is a StageError naming the fix."""
    runtime = ctx.section("runtime", RuntimeConfig)
    if not device.startswith("cuda"):
        # Before torch starts its threads, which inherit the binding.
        cores.reserve(runtime.threads)
    try:
        pin(runtime, device)
    except PinError as err:
        cores.release()
        raise StageError(f"{err} (conf/runtime/)") from err
    try:
        yield
    finally:
        cores.release()


def environment(device: str = "cpu") -> dict[str, Any]:
    """What shaped the numbers, for the metrics: versions and pinned settings, never host names or times."""
    record: dict[str, Any] = {
        "torch": torch.__version__,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability().lower(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        record["device"] = torch.cuda.get_device_name()
        record["cuda"] = torch.version.cuda
    return record
