"""Give each torch stage running on this machine cores of its own, so parallel jobs share instead of fight.

Two trainings of `runtime.threads=2` started at once on 2 cores each spin 2 OpenMP threads on the
same cores and take about ten times as long as one alone. A stage therefore reserves
`runtime.threads` cores before its first torch work: an exclusive lock per core in a directory shared
by every starbuild process of the machine, held until the process ends, and binds itself to those
cores. The thread count (a declared param: results depend on it) never changes; when fewer cores
are free the stage says so in one warning, with its expected slowdown and the fix; with none free it
waits for a job to end rather than crawl. `dvc exp run --run-all -j N` and Hydra's joblib launcher
thus give each job its share. `STARBUILD_CORES=off` turns the reservation off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "STARBUILD_CORES"
LOCK_DIR = Path(tempfile.gettempdir()) / "starbuild-cores"
WAIT_S = 0.2

# This process's reservation: (core, lock fd) pairs, and the cores it could use before binding.
_held: list[tuple[int, int]] = []
_original: set[int] | None = None


def release() -> None:
    """Give back this process's cores and unbind it."""
    global _original
    for _, fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()
    if _original is not None:
        os.sched_setaffinity(0, _original)
        _original = None


def _lock(core: int) -> int | None:
    try:
        fd = os.open(LOCK_DIR / f"core-{core}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:  # another user's lock file: that core counts as taken
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _take(available: list[int], threads: int) -> None:
    for core in available:
        if len(_held) == threads:
            return
        fd = _lock(core)
        if fd is not None:
            _held.append((core, fd))


def _is_rank() -> bool:
    """Whether this process is one rank of a multi-process job, whose siblings may hold the cores it would wait for."""
    return any(key in os.environ for key in ("LOCAL_RANK", "SLURM_PROCID", "TORCHELASTIC_RUN_ID"))


def reserve(threads: int) -> list[int]:
    """Lock up to `threads` free cores of this process's CPU set and bind the process to them; the cores.

    With none free, a job waits for one; a rank of a multi-process job stays on its CPU set instead.
    """
    global _original
    release()
    if os.environ.get(ENV) == "off":
        return []
    available = sorted(os.sched_getaffinity(0))
    if not LOCK_DIR.is_dir():
        LOCK_DIR.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # every user's jobs share it, as /tmp
            LOCK_DIR.chmod(0o1777)
    _take(available, threads)
    if not _held and not _is_rank():
        log.warning("all %d cores are held by other starbuild jobs: waiting for one to finish (run fewer jobs at "
                    "once: jobs x runtime.threads <= %d)", len(available), len(available))
        while not _held:
            time.sleep(WAIT_S)
            _take(available, threads)
    cores = [core for core, _ in _held]
    if cores:
        _original = set(available)
        os.sched_setaffinity(0, cores)
    if len(available) < threads:
        log.warning("runtime.threads=%d but this process may use only %d cores: each step takes about %.0fx as long "
                    "as on %d free cores (results do not change)", threads, len(available), threads / len(available),
                    threads)
    elif len(cores) < threads:
        where = f"on cores {', '.join(map(str, cores))}" if cores else "on cores the other jobs use"
        log.warning("runtime.threads=%d but only %d of the %d cores are free (other starbuild jobs hold the rest): "
                    "running %s takes about %.0fx as long as alone; run fewer jobs at once (jobs x runtime.threads "
                    "<= %d)", threads, len(cores), len(available), where, threads / max(1, len(cores)),
                    len(available))
    return cores
