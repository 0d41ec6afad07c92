"""The whole DAG under DVC on the smoke preset, in fresh copies of the project.

One module-scoped build is shared by the checks: determinism against a second `dvc repro -f`,
a no-op second repro, params isolation under `dvc exp run -S`, a Hydra multirun by hand and a
queued DVC sweep.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from tests.conftest import STAGES
from tests.projects import SMOKE, environment, fresh_project, lock_md5s, run, sh, stages_run

pytestmark = pytest.mark.e2e

def repro_log(project: Path) -> Path:
    """Where the first build's output is kept: beside the project, so git never sees it."""
    return project.parent / f"{project.name}.repro.log"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose whole DAG ran once with `dvc repro`."""
    project = fresh_project(tmp_path_factory.mktemp("clone_a"))
    output = sh(project, "dvc", "repro")
    repro_log(project).write_text(output)
    return project


def test_repro_builds_every_stage_and_ends_clean(built: Path) -> None:
    assert stages_run(repro_log(built).read_text()) == STAGES
    assert sh(built, "dvc", "stage", "list", "--name-only").split() == STAGES
    assert "up to date" in sh(built, "dvc", "status").lower()
    evaluation = json.loads((built / "metrics/eval.json").read_text())
    assert math.isfinite(evaluation["val/loss"]) and evaluation["val/bits_per_byte"] > 0
    # The trained tiny model went through every benchmark: its scores are near zero, but each path ran.
    assert evaluation["humaneval/tasks"] > 0 and 0 <= evaluation["humaneval/pass@1"] <= 1
    assert evaluation["fim/humaneval/tasks"] > 0 and evaluation["fim/val/tasks"] > 0
    assert (built / "metrics/eval_tasks.jsonl").read_text().count("\n") >= evaluation["humaneval/tasks"]
    assert "val/loss" in sh(built, "dvc", "metrics", "show")
    assert (built / "reports/summary.md").is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(built / "models/hf")
    assert model.config.model_type == "starcoder2"


def test_filter_funnel_shows_in_dvc_metrics_and_plots(built: Path) -> None:
    workspace = json.loads(run(built, "dvc", "metrics", "show", "--json").stdout)[""]["data"]
    funnel = workspace["metrics/filter.json"]["data"]
    assert funnel["input_files"] > funnel["kept_files"] > 0 and "low_alpha" in funnel["dropped_first"]
    plots = json.loads(run(built, "dvc", "plots", "show", "--json").stdout)["data"]
    for name in ("plots/filter_funnel.csv", "filter_funnel_bytes"):
        rows = plots[name][0]["content"]["data"]["values"]
        assert rows[0]["rule"] == "input" and int(rows[-1]["files"]) == funnel["kept_files"], name


def test_second_repro_does_nothing(built: Path) -> None:
    output = sh(built, "dvc", "repro")
    assert "Data and pipelines are up to date." in output
    assert "Running stage" not in output


# What another machine's environment would say: other thread counts and instruction sets. The stages
# pin their own (runtime params), so none of this may change a byte.
OTHER_MACHINE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default",
                 "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41", "RAYON_NUM_THREADS": "1"}


def test_verify_rebuilds_a_clone_with_other_thread_counts_identically(built: Path) -> None:
    sh(built, "git", "add", "-A")
    sh(built, "git", "commit", "-qm", "built")
    output = sh(built, "python", "-m", "starbuild.verify", extra_env=OTHER_MACHINE)
    assert f"all {len(lock_md5s(built))} outs reproduce dvc.lock" in output, output


def test_eval_param_change_reruns_eval_alone(built: Path) -> None:
    sh(built, "git", "add", "-A")
    sh(built, "git", "commit", "-qm", "built", "--allow-empty")
    output = sh(built, "dvc", "exp", "run", "-S", SMOKE, "-S", "eval.perplexity.max_tokens=1024")
    assert stages_run(output) == ["eval", "report"], output
    assert json.loads((built / "metrics/eval.json").read_text())["val/tokens"] <= 1024


def test_hydra_multirun_writes_job_directories_not_dvc_outs(built: Path) -> None:
    before = lock_md5s(built)
    # Both jobs at once through the joblib launcher, one thread each, so each gets a core of its own.
    sh(built, "python", "stages/train.py", "-m", SMOKE, "optim.lr=1e-3,3e-3", "hydra.sweep.dir=sweep",
       "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "runtime.threads=1")
    weights = [built / "sweep" / job / "models/checkpoints/model.safetensors" for job in ("0", "1")]
    assert all(w.is_file() for w in weights)
    assert weights[0].read_bytes() != weights[1].read_bytes()
    assert "up to date" in sh(built, "dvc", "status").lower()
    assert lock_md5s(built) == before


def experiments(node: object) -> list[dict]:
    """The data of every experiment (not the baseline) in `dvc exp show --json` output."""
    found = []
    if isinstance(node, dict):
        for exp in node.get("experiments") or []:
            found.extend(rev["data"] for rev in exp.get("revs", []))
        for value in node.values():
            if isinstance(value, list):
                found.extend(e for item in value if isinstance(item, dict) for e in experiments(item))
    elif isinstance(node, list):
        found.extend(e for item in node for e in experiments(item))
    return found


def test_queued_sweep_runs_all_points(built: Path) -> None:
    sh(built, "dvc", "exp", "run", "--queue", "-S", SMOKE, "-S", "eval.batch_size=2,4")
    sh(built, "dvc", "exp", "run", "--run-all", "-j", "1")
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=built, env=environment(built),
                           capture_output=True, text=True, check=True).stdout
    by_batch_size = {}
    for data in experiments(json.loads(shown)):
        by_batch_size[data["params"]["params.yaml"]["data"]["eval"]["batch_size"]] = data
    assert {2, 4} <= set(by_batch_size)
    for batch_size in (2, 4):
        data = by_batch_size[batch_size]
        # A failed experiment keeps its params but has no metrics: each point must have succeeded.
        assert data.get("status", "Success") == "Success", data
        evaluation = data["metrics"]["metrics/eval.json"]["data"]
        assert math.isfinite(evaluation["val/loss"]) and evaluation["val/bits_per_byte"] > 0, data
