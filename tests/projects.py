"""Whole projects for the end-to-end tests: fresh git copies of this repository and commands run in them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from starbuild.core.config import compose, render
from tests.factories import copy_sources

SMOKE = "experiment=smoke"
# Built or recorded by a run of the DAG: never copied into a fresh project.
GENERATED = ("data/", "models/", "metrics/", "plots/", "reports/", "outputs/", "multirun/", "dvc.lock")


def environment(project: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project / "src"),
        "GIT_AUTHOR_NAME": "starbuild-test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "starbuild-test", "GIT_COMMITTER_EMAIL": "test@example.org",
    }


def run(project: Path, *cmd: str, timeout: int = 600, extra_env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess:
    """Run a command in the project with the project's code first on the paths."""
    return subprocess.run(cmd, cwd=project, env={**environment(project), **(extra_env or {})},
                          capture_output=True, text=True, timeout=timeout)


def sh(project: Path, *cmd: str, timeout: int = 600, extra_env: dict[str, str] | None = None) -> str:
    """Run a command in the project; fail the test with its output if it fails."""
    result = run(project, *cmd, timeout=timeout, extra_env=extra_env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def fresh_project(dest: Path) -> Path:
    """A new git repository holding the project's sources, with params composed for the smoke run."""
    copy_sources(dest, GENERATED)
    (dest / "params.yaml").write_text(render(compose([SMOKE], conf_dir=dest / "conf")), encoding="utf-8")
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "smoke project")
    return dest


def lock_md5s(project: Path) -> dict[str, str]:
    """out path -> md5 of the project's dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]




def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """A moto S3 server started on 127.0.0.1 (with `env` added to its environment); yields its endpoint URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
