"""Two trainings at once against one after the other, with and without starbuild's core reservation.

Runs `python stages/train.py` by hand (the `tiny` preset on data/tokens: run `make repro` first) with
STEPS steps, each job writing into its own temporary directory: JOBS of them one after the other, then
JOBS at once, then JOBS at once with the reservation off (`STARBUILD_CORES=off`, every job's threads
on every core: what `dvc exp run -j 2` did before). Prints the wall time of each and the ratios to
the sequential run (at once should not be slower than one after the other).
Run: `.venv/bin/python bench/bench_parallel_jobs.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS, STEPS = 2, 60


def start(out: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "stages/train.py", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=1000",
               "trainer.limit_val_batches=0", f"hydra.run.dir={out}"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    stderr, _ = process.communicate()
    if process.returncode != 0:
        sys.exit(f"a training failed:\n{stderr[-2000:]}")
    return stderr


def run(tmp: Path, name: str, together: bool, env: dict[str, str]) -> tuple[float, str]:
    begin = time.perf_counter()
    logs = []
    if together:
        processes = [start(tmp / f"{name}-{i}", env) for i in range(JOBS)]
        logs = [finish(p) for p in processes]
    else:
        for i in range(JOBS):
            logs.append(finish(start(tmp / f"{name}-{i}", env)))
    warnings = sorted({line.split("] - ", 1)[-1][:110] for log in logs for line in log.splitlines()
                       if "starbuild.cores" in line})
    return time.perf_counter() - begin, "; ".join(warnings)


def main() -> None:
    if not (ROOT / "data" / "tokens" / "index.json").is_file():
        sys.exit("data/tokens is missing: run `make repro` first")
    env = {key: value for key, value in os.environ.items() if key != "STARBUILD_CORES"}
    print(f"{JOBS} trainings of {STEPS} steps (tiny, runtime.threads from conf) on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        sequential, _ = run(Path(tmp), "sequential", False, env)
        together, notes = run(Path(tmp), "together", True, env)
        fighting, _ = run(Path(tmp), "fighting", True, {**env, "STARBUILD_CORES": "off"})
    print(f"  one after the other            {sequential:6.1f} s")
    print(f"  at once, cores reserved        {together:6.1f} s  ({together / sequential:.2f}x the sequential time)")
    if notes:
        print(f"    the jobs said: {notes}")
    print(f"  at once, reservation off       {fighting:6.1f} s  ({fighting / sequential:.2f}x the sequential time)")


if __name__ == "__main__":
    main()
