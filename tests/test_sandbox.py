"""The execution sandbox: hostile programs are contained, marked failed with a reason, and leave no trace."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from starbuild.eval import sandbox
from starbuild.eval.sandbox import FIRST_UID, SandboxLimits, run_program, run_programs
from tests.conftest import REPO_ROOT

LIMITS = SandboxLimits(timeout_s=3, cpu_s=2, memory_mb=1024, processes=32, file_mb=8, workers=2)
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a sandbox uid and mount namespace need root (CI runs as root)")


def test_the_active_protections_are_reported() -> None:
    outcome = run_program("print('hello')", LIMITS)
    assert outcome.passed and outcome.reason == "passed"
    print("sandbox protections:", " ".join(outcome.protections))
    assert {"session", "clean_env", "fresh_dir", "rlimits"} <= set(outcome.protections)
    if ROOT:
        assert {"net_namespace", "private_tmp", "own_uid"} <= set(outcome.protections)


@pytest.mark.parametrize(("source", "reason"), [
    ("assert sum([1, 2]) == 4", "failed: AssertionError"),
    ("raise SystemExit(3)", "exit 3"),
    ("while True:\n    pass", "cpu_time"),
    ("import time\ntime.sleep(60)", "timeout"),
    ("blob = bytearray(50 * 2**30)", "memory"),
])
def test_failures_are_named(source: str, reason: str) -> None:
    outcome = run_program(source, LIMITS)
    assert (outcome.passed, outcome.reason) == (False, reason)


def _uid_alive(uid: int) -> list[int]:
    return sandbox._uid_processes(uid)


def test_a_fork_bomb_is_contained_and_killed() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    outcome = run_program(bomb, LIMITS, slot=7)
    assert not outcome.passed and outcome.reason in {"timeout", "cpu_time"}
    if ROOT:
        assert _uid_alive(FIRST_UID + 7) == []


def test_a_background_child_does_not_outlive_its_program(tmp_path: Path) -> None:
    detached = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n")
    outcome = run_program(detached, LIMITS, slot=5)
    assert outcome.passed
    if ROOT:
        assert _uid_alive(FIRST_UID + 5) == []


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A directory of the repository (not under /tmp, which the sandbox replaces), removed afterwards."""
    path = REPO_ROOT / ".cache" / f"test-sandbox-{os.getpid()}"
    path.mkdir(parents=True, mode=0o755)
    yield path
    shutil.rmtree(path)


@needs_root
def test_the_workspace_can_be_neither_written_nor_deleted(workspace: Path) -> None:
    os.chmod(workspace, 0o755)
    victim = workspace / "keep.txt"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    for attack in (f"open({str(victim)!r}, 'w').write('gone')",
                   f"import os\nos.remove({str(victim)!r})",
                   f"import shutil\nshutil.rmtree({str(workspace)!r})",
                   f"open({str(workspace / 'new.txt')!r}, 'w').write('x')"):
        outcome = run_program(attack, LIMITS)
        # A checkout under /tmp is hidden by the private tmpfs (not found); elsewhere the uid lacks permission.
        assert not outcome.passed and outcome.reason in {"failed: PermissionError", "failed: FileNotFoundError"}, attack
    assert victim.read_text() == "precious" and sorted(p.name for p in workspace.iterdir()) == ["keep.txt"]


@needs_root
def test_world_writable_directories_are_private(tmp_path: Path) -> None:
    marker = f"starbuild-sandbox-escape-{os.getpid()}"
    outcome = run_program(f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(d + '/{marker}', 'w').write('x')\n",
                          LIMITS)
    assert outcome.passed  # it wrote, but into tmpfs that vanished with it
    assert not any(Path(d, marker).exists() for d in ("/tmp", "/var/tmp", "/dev/shm"))


def test_file_size_is_limited() -> None:
    outcome = run_program("open('big', 'wb').write(b'x' * (64 << 20))", LIMITS)
    assert (outcome.passed, outcome.reason) == (False, "file_size")


def test_environment_secrets_are_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    outcome = run_program("import os\nassert 'do-not-leak' not in repr(dict(os.environ)), 'leaked'\n"
                          "print(os.environ['AWS_SECRET_ACCESS_KEY'])", LIMITS)
    assert (outcome.passed, outcome.reason) == (False, "failed: KeyError")


def test_no_network_even_on_loopback() -> None:
    if "net_namespace" not in run_program("pass", LIMITS).protections:
        pytest.skip("no network namespace here: needs root or unprivileged user namespaces")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    outcome = run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", LIMITS)
    server.close()
    thread.join()
    assert not outcome.passed and outcome.reason == "failed: OSError" and accepted == []


def test_many_programs_run_in_parallel_in_order() -> None:
    sources = [f"assert {i} % 3 != 0" for i in range(12)]
    ticks: list[int] = []
    outcomes = list(run_programs(sources, LIMITS, progress=lambda: ticks.append(1)))
    assert [o.passed for o in outcomes] == [i % 3 != 0 for i in range(12)] and len(ticks) == 12


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="memory_mb=0"):
        SandboxLimits(timeout_s=1, cpu_s=1, memory_mb=0, processes=1, file_mb=1)
