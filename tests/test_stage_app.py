"""Stage scripts as Hydra apps: DVC mode vs hand-run mode, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from starbuild.core import layout
from tests.conftest import METRICS_STAGES, REPO_ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's configuration and stage scripts, without any data."""
    for name in ("conf", "stages"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def run_stage(project: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, f"stages/{script}.py", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_missing_input_names_the_stage_to_run(project: Path) -> None:
    result = run_stage(project, "filter", "--config-name=params")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: filter: data/raw does not exist; run `dvc repro pull` first (or `make repro`)"
    )


def test_unknown_group_value_fails_in_one_line(project: Path) -> None:
    result = run_stage(project, "pull", "executor=nosuch")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: unknown value 'nosuch' for config group 'executor'; choose one of: local, ray "
        f"(files in {project / 'conf' / 'executor'})"
    )


def write_all_metrics(project: Path) -> None:
    for stage in METRICS_STAGES:
        path = project / layout.metrics_file(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"count": 1}))


@pytest.mark.parametrize("flag", [["--config-name=params"], ["--config-name", "params"]])
def test_dvc_mode_writes_the_declared_out_and_nothing_else(project: Path, flag: list[str]) -> None:
    write_all_metrics(project)
    result = run_stage(project, "report", *flag)
    assert result.returncode == 0, result.stderr
    assert (project / "reports" / "summary.md").is_file()
    assert not (project / "outputs").exists() and not (project / ".hydra").exists()


def test_hand_run_multirun_writes_into_job_directories(project: Path) -> None:
    write_all_metrics(project)
    result = run_stage(project, "report", "-m", "seed=1,2", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    assert (project / "sweep" / "0" / "reports" / "summary.md").is_file()
    assert (project / "sweep" / "1" / "reports" / "summary.md").is_file()
    assert not (project / "reports").exists()


def test_hand_run_job_is_named_for_the_stage_and_logs_the_real_output(project: Path) -> None:
    write_all_metrics(project)
    result = run_stage(project, "report", "-m", "seed=1")
    assert result.returncode == 0, result.stderr
    summaries = list((project / "multirun" / "report").glob("*/0/reports/summary.md"))
    assert len(summaries) == 1
    assert f"wrote {summaries[0]}" in result.stderr + result.stdout


def test_truncated_input_shard_fails_in_one_line_naming_it(project: Path) -> None:
    from tests.factories import raw_row, write_table

    shard = write_table(project / layout.RAW, [[raw_row("r", "a.py", "x = 1\n")]]) / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    result = run_stage(project, "filter", "--config-name=params")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: filter: data/raw/part-00000.parquet is not readable (ArrowInvalid: "
    )
    assert result.stderr.strip().endswith("restore it with `dvc checkout data/raw` or rebuild it with "
                                          "`dvc repro -f -s pull`")
    assert not (project / layout.FILTERED).exists()


def test_empty_input_table_names_the_stage_to_rerun(make_context) -> None:
    from starbuild.core import schemas
    from starbuild.core.stage import StageError

    ctx = make_context("filter")
    (ctx.root / layout.RAW).mkdir(parents=True)
    with pytest.raises(StageError, match=r"data/raw has no shards; run `dvc repro pull` first"):
        ctx.input_shards(layout.RAW, schemas.RAW)
