"""Two trainings at once against one after the other, with and without starbuild's core reservation.

1. By hand: `python stages/train.py` (the `tiny` preset on data/tokens: run `make repro` first) with
   STEPS steps, each job writing into its own temporary directory: JOBS of them one after the other,
   then JOBS at once, then JOBS at once with the reservation off (`STARBUILD_CORES=off`, every job's
   threads on every core, as before).
2. Through DVC: a clone of HEAD whose outs are checked out from this repository's DVC cache, JOBS
   queued experiments that change the training (`-S optim.lr=…`, so train, export, eval and report
   rerun), run with `dvc exp run --run-all -j 1` and then, queued again, `-j JOBS`.
Prints the wall time of each and the ratios to the sequential run (at once should not be slower).
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
    bench_dvc_experiments(env)


def sh(cwd: Path, *command: str, env: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")


def bench_dvc_experiments(env: dict[str, str]) -> None:
    """JOBS queued experiments, run with -j 1 and then with -j JOBS, in a clone of HEAD."""
    env = {**env, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    rates = [f"optim.lr={1e-3 * (i + 2):g}" for i in range(JOBS)]
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        sh(ROOT, "git", "clone", "-q", str(ROOT), str(clone), env=env)
        sh(clone, "dvc", "cache", "dir", str(ROOT / ".dvc" / "cache"), env=env)
        sh(clone, "dvc", "checkout", "-q", env=env)
        times = {}
        for jobs in (1, JOBS):
            for rate in rates:
                sh(clone, "dvc", "exp", "run", "--queue", "-S", rate, "-S", f"trainer.max_steps={STEPS}", env=env)
            begin = time.perf_counter()
            sh(clone, "dvc", "exp", "run", "--run-all", "-j", str(jobs), env=env)
            times[jobs] = time.perf_counter() - begin
    print(f"{JOBS} DVC experiments (train, export, eval, report each), in a clone of HEAD")
    print(f"  dvc exp run --run-all -j 1      {times[1]:6.1f} s")
    print(f"  dvc exp run --run-all -j {JOBS}      {times[JOBS]:6.1f} s  ({times[JOBS] / times[1]:.2f}x the -j 1 time)")


if __name__ == "__main__":
    main()
