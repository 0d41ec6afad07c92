"""Run untrusted Python (model-written code) in its own confined process, never in the stage's.

Each program gets a fresh temporary directory, a clean environment (no secrets), a wall-clock
timeout and CPU-time, address-space, process-count and file-size limits (`confine.py` applies them
before exec). As root, which CI is, it also runs under a uid of its own (so it can neither write
nor delete anything of the workspace, and the uid's processes, fork bombs included, are all killed
afterwards), in its own network namespace (no network at all) and mount namespace (a private tmpfs
over /tmp, /var/tmp and /dev/shm). Without root, the network namespace needs unprivileged user
namespaces; `Outcome.protections` names what held for each run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from starbuild.eval import confine

# Run as a script in the child, imported here so that it is one of the eval stage's deps.
CONFINE = Path(confine.__file__)
# Sandboxes run as uid FIRST_UID + slot (root only): uids no account uses, one per parallel slot.
FIRST_UID = 61000
# Bytes of a program's stdout/stderr kept for the reason of a failure.
OUTPUT_TAIL = 4096
CONFINED_PREFIX = "confined: "


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it)."""


@dataclass(unsafe_hash=True)
class SandboxLimits:
    """The `eval.sandbox` config section: what one program may use (not frozen: Hydra merges conf/eval/ into it)."""

    # Wall-clock seconds before the program is killed.
    timeout_s: float
    # CPU seconds (SIGXCPU, then SIGKILL a second later).
    cpu_s: int
    # Address space in MiB.
    memory_mb: int
    # Processes (and threads) the program's uid may have at once.
    processes: int
    # Largest file it may write, in MiB (also the size of each private tmpfs).
    file_mb: int
    # Programs run at once; null = the CPUs this process may use.
    workers: int | None = None

    def __post_init__(self) -> None:
        for key in ("timeout_s", "cpu_s", "memory_mb", "processes", "file_mb"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}={getattr(self, key)} must be positive")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers={self.workers} must be ≥ 1 or null")

    def parallel(self) -> int:
        """How many programs run at once."""
        return self.workers or len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Outcome:
    """How one program ended."""

    passed: bool
    # passed, failed: <ExceptionName>, timeout, cpu_time, memory, file_size, killed: <signal> or exit <code>.
    reason: str
    protections: tuple[str, ...]


@functools.cache
def sandbox_python(limits: SandboxLimits) -> str:
    """An interpreter a sandbox can run: this one, unless its files are private to root (pyenv under /root),
    else the system's python3."""
    candidates = [sys.executable, *(path for path in ("/usr/bin/python3", shutil.which("python3")) if path)]
    for python in dict.fromkeys(candidates):
        if run_program("pass", limits, python=python).passed:
            return python
    raise SandboxError(f"no Python interpreter the sandbox user can run among {', '.join(candidates)}; "
                       "install one readable by every user (`apt-get install python3-minimal`)")


def run_program(source: str, limits: SandboxLimits, slot: int = 0, python: str | None = None) -> Outcome:
    """Run `source` as a Python program in a sandbox; passed means it exited 0 within the limits."""
    python = python or sandbox_python(limits)
    workdir = Path(tempfile.mkdtemp(prefix="starbuild-sandbox-"))
    uid = FIRST_UID + slot
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        if os.geteuid() == 0:
            os.chown(workdir, uid, uid)
            os.chown(workdir / "program.py", uid, uid)
        return _execute(workdir, limits, uid, python)
    finally:
        if os.geteuid() == 0:
            _kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def _execute(workdir: Path, limits: SandboxLimits, uid: int, python: str) -> Outcome:
    config = {"uid": uid, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb,
              "processes": limits.processes, "file_mb": limits.file_mb}
    # As root the program sees a private /tmp (its own directory is hidden under it; its cwd still works).
    scratch = "/tmp" if os.geteuid() == 0 else str(workdir)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch,
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-I", str(CONFINE), json.dumps(config), "--",
               python, "-I", "-B", "program.py"]
    # Output goes to files (capped by RLIMIT_FSIZE), so a program printing forever fills no memory here.
    with (workdir / "stdout").open("w+b") as out, (workdir / "stderr").open("w+b") as err:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, start_new_session=True)
        try:
            code = process.wait(timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(process.pid)
        if timed_out:
            code = process.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    first, _, rest = stderr.partition("\n")
    if not first.startswith(CONFINED_PREFIX):
        raise SandboxError(f"the sandbox could not confine a program (exit {code}): {stderr[-OUTPUT_TAIL:]}")
    protections = tuple(first.removeprefix(CONFINED_PREFIX).split())
    return Outcome(code == 0 and not timed_out, _reason(code, timed_out, rest[-OUTPUT_TAIL:]), protections)


def _reason(code: int, timed_out: bool, stderr: str) -> str:
    if timed_out:
        return "timeout"
    if code == 0:
        return "passed"
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "Error" not in stderr:
        return "cpu_time" if code == -signal.SIGXCPU else "killed: SIGKILL"
    if code < 0:
        return f"killed: {signal.Signals(-code).name}"
    last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
    if last.startswith("MemoryError"):
        return "memory"
    if "[Errno 27]" in last:  # EFBIG: Python ignores SIGXFSZ, so RLIMIT_FSIZE surfaces as an OSError
        return "file_size"
    name = last.split(":", 1)[0].strip()
    return f"failed: {name}" if name.isidentifier() else f"exit {code}"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _uid_processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(entry))
                        break
        except OSError:
            continue
    return found


def _kill_uid(uid: int, deadline_s: float = 10.0) -> None:
    """SIGKILL every process of `uid` until none is left (a fork bomb's children included)."""
    stop = time.monotonic() + deadline_s
    while (pids := _uid_processes(uid)) and time.monotonic() < stop:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def run_programs(sources: Iterable[str], limits: SandboxLimits,
                 progress: Callable[[], None] | None = None) -> Iterator[Outcome]:
    """Outcomes of `sources` in their order, run `limits.parallel()` at a time, each in its own slot."""
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(limits.parallel()):
        slots.put(slot)

    python = sandbox_python(limits)

    def one(source: str) -> Outcome:
        slot = slots.get()
        try:
            return run_program(source, limits, slot, python)
        finally:
            slots.put(slot)
            if progress is not None:
                progress()

    with ThreadPoolExecutor(max_workers=limits.parallel()) as pool:
        yield from pool.map(one, sources)
