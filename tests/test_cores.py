"""Parallel torch stages get cores of their own; a job that cannot gets one warning naming its slowdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from starbuild import cores
from tests.conftest import REPO_ROOT

CPUS = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs")
# Another job started on its own (as by `dvc exp run -j 2`): on every CPU, not on this process's binding.
OTHER_JOB = ("import json, logging, os, sys\nlogging.basicConfig(level=logging.WARNING, stream=sys.stdout)\n"
             "os.sched_setaffinity(0, json.loads(sys.argv[2]))\n"
             "from starbuild import cores\ngot = cores.reserve(int(sys.argv[1]))\n"
             "print(json.dumps({'got': got, 'bound': sorted(os.sched_getaffinity(0))}))\n")


def other_job(threads: int) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    env.pop(cores.ENV, None)
    out = subprocess.run([sys.executable, "-c", OTHER_JOB, str(threads), json.dumps(CPUS)], env=env,
                         capture_output=True, text=True, check=True).stdout
    *warnings, result = out.strip().splitlines()
    return json.loads(result), "\n".join(warnings)


@pytest.fixture(autouse=True)
def released(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(cores.ENV, raising=False)
    yield
    cores.release()


@needs_two
def test_a_second_job_gets_the_other_core() -> None:
    mine = cores.reserve(1)
    assert len(mine) == 1 and sorted(os.sched_getaffinity(0)) == mine
    theirs, warnings = other_job(1)
    assert theirs["got"] == theirs["bound"] and len(theirs["got"]) == 1 and theirs["got"] != mine
    assert warnings == ""


@needs_two
def test_a_job_without_its_share_warns_once_with_the_slowdown() -> None:
    held = cores.reserve(len(CPUS) - 1)
    theirs, warnings = other_job(2)
    free = sorted(set(CPUS) - set(held))
    assert theirs["got"] == free == theirs["bound"]
    assert warnings.count("WARNING") == 1
    assert f"runtime.threads=2 but only 1 of the {len(CPUS)} cores are free" in warnings
    assert "about 2x as long as alone" in warnings


def test_release_unbinds_and_frees_the_cores() -> None:
    cores.reserve(1)
    cores.release()
    assert sorted(os.sched_getaffinity(0)) == CPUS
    theirs, _ = other_job(len(CPUS))
    assert theirs["got"] == CPUS


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cores.ENV, "off")
    assert cores.reserve(1) == [] and sorted(os.sched_getaffinity(0)) == CPUS


@needs_two
def test_a_job_with_no_free_core_waits_for_one() -> None:
    import threading
    import time

    cores.reserve(len(CPUS))
    threading.Thread(target=lambda: (time.sleep(1.0), cores.release()), daemon=True).start()
    start = time.monotonic()
    theirs, warnings = other_job(1)
    assert time.monotonic() - start >= 0.9 and len(theirs["got"]) == 1
    assert "waiting for one to finish" in warnings
