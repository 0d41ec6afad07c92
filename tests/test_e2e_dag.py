"""The whole DAG under DVC on the smoke preset, in fresh copies of the project.

One build of the session (`smoke_build`, copied) is shared by the checks: determinism against a
second `dvc repro -f`, a no-op second repro, params isolation under `dvc exp run -S`, a Hydra
multirun by hand and a queued DVC sweep.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import METRICS_STAGES as STAGES_WITH_METRICS
from tests.conftest import STAGES, SmokeBuild
from tests.projects import SMOKE, environment, lock_md5s, run, sh, stages_run

pytestmark = pytest.mark.e2e

def repro_log(project: Path) -> Path:
    """Where the first build's output is kept: beside the project, so git never sees it."""
    return project.parent / f"{project.name}.repro.log"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, smoke_build: SmokeBuild) -> Path:
    """A project whose whole DAG ran once with `dvc repro`."""
    project = smoke_build.copy_to(tmp_path_factory.mktemp("clone_a") / "project")
    repro_log(project).write_text(smoke_build.repro_output)
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
    # The report's figures are DVC plots too: the language mix as pulled and in the final dataset.
    pulled = json.loads((built / "metrics/pull.json").read_text())["languages"]
    final = json.loads((built / "metrics/clean.json").read_text())["languages"]
    for name, column, expected in (("languages_pulled", "pulled", pulled),
                                   ("plots/report_languages.csv", "final", {k: v["files"] for k, v in final.items()})):
        rows = plots[name][0]["content"]["data"]["values"]
        assert {r["language"]: int(r[column]) for r in rows if int(r[column])} == expected, name


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Debian's chromium, headless (as root it needs --no-sandbox), on a local page; nothing from the network."""
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", *args], capture_output=True, text=True, timeout=120, check=True)


def marks(figure: Any) -> dict[tuple[str, str], float]:
    """(series, label) -> value of every bar and point of a rendered figure."""
    return {(m["data-series"], m["data-label"]): float(m["data-value"]) for m in figure.select(".bar, .point")}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` package (apt-get install chromium); "
                                             ".ci/run installs it")
def test_report_page_renders_in_chromium_with_the_metrics_numbers(built: Path, tmp_path: Path) -> None:
    from bs4 import BeautifulSoup

    from starbuild.report.page import SECTIONS
    from starbuild.report.sources import CLEANED_SOURCES, CLEANING_REMOVALS

    page = (built / "reports/index.html").as_uri()
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,5000", f"--screenshot={shot}", page)
    png = shot.read_bytes()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    # A blank or unstyled page compresses to a few kilobytes; this one is charts and tables.
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (1200, 5000) and len(png) > 100_000
    dom = BeautifulSoup(chromium("--dump-dom", page).stdout, "html.parser")
    for key, title in SECTIONS:
        section = dom.find("section", id=key)
        assert section is not None and section.h2.get_text() == title, key
    metrics = {stage: json.loads((built / f"metrics/{stage}.json").read_text()) for stage in STAGES_WITH_METRICS}
    filt, pull, clean, dedup, evaluation = (metrics[k] for k in ("filter", "pull", "clean", "dedup", "eval"))
    figures = {f["data-figure"]: f for f in dom.select("figure[data-figure]")}
    # A figure is empty only where its metrics are: the smoke corpus may hold no duplicates.
    empty = set() if any(dedup["cluster_sizes"].values()) else {"dedup_clusters"}
    for name, figure in figures.items():
        if name in empty:
            assert "found no duplicates" in figure.get_text() and not marks(figure)
        else:
            assert marks(figure), f"figure {name} has no data"
    files = {label: v for (_, label), v in marks(figures["funnel_files"]).items()}
    assert files == {"input": filt["input_files"], "kept": filt["kept_files"],
                     **{rule: c["files"] for rule, c in filt["dropped_first"].items()}}
    by_bytes = {label: v for (_, label), v in marks(figures["funnel_bytes"]).items()}
    assert by_bytes["input"] == filt["input_bytes"] and by_bytes["kept"] == filt["kept_bytes"]
    languages = marks(figures["languages"])
    assert {lang: v for (series, lang), v in languages.items() if series == "pulled"} == pull["languages"]
    assert {lang: v for (series, lang), v in languages.items() if series == "final" and v} == \
        {lang: c["files"] for lang, c in clean["languages"].items()}
    licenses = marks(figures["licenses"])
    assert {t: v for (series, t), v in licenses.items() if series == "pulled"} == pull["files_by_license_type"]
    assert {t: v for (series, t), v in licenses.items() if series == "final" and v} == \
        {t: c["files"] for t, c in clean["license_types"].items()}
    clusters = {(reason, label): v for (reason, label), v in marks(figures["dedup_clusters"]).items() if v}
    assert clusters == {(r, f"{s} files"): n for r, sizes in dedup["cluster_sizes"].items() for s, n in sizes.items()}
    assert {t: v for (_, t), v in marks(figures["pii"]).items()} == clean["pii"]
    assert {b: v for (_, b), v in marks(figures["decontamination"]).items()} == clean["decontaminated"]
    losses = [float(line.split(",")[1]) for line in (built / "plots/train_loss.csv").read_text().splitlines()[1:]]
    assert [v for (series, _), v in marks(figures["loss"]).items() if series == "train_loss"] == losses
    for cell in dom.select("#evaluation td[data-metric]"):
        assert float(cell["data-value"]) == evaluation[cell["data-metric"]]
    assert {lang: v for (_, lang), v in marks(figures["bits_per_byte"]).items()} == \
        {k.split("/")[1]: v for k, v in evaluation.items() if k.count("/") == 2 and k.endswith("/bits_per_byte")}
    mixture, issues = metrics["mixture"]["sources"], metrics["issues"]
    assert {source: v for (_, source), v in marks(figures["mixture"]).items()} == \
        {source: entry["train_tokens"] for source, entry in mixture.items()}
    cleaned = metrics["clean_sources"]["sources"]
    assert {reason: v for (_, reason), v in marks(figures["source_drops"]).items()} == {
        f"{source}: {reason}": n for source, dropped in (
            ("issues", issues["dropped"]), ("pull requests", issues["pull_requests"]["dropped"]),
            *((label, {reason: cleaned[name][key] for reason, key in CLEANING_REMOVALS.items()})
              for name, label in CLEANED_SOURCES.items()))
        for reason, n in dropped.items() if n}
    notebooks = metrics["notebooks"]
    read_kept = {"source:Jupyter scripts": [notebooks["notebooks"], notebooks["jupyter_script"]["converted"]],
                 "source:Jupyter structured": [notebooks["notebooks"], notebooks["jupyter_structured"]["converted"]],
                 "source:GitHub issues": [issues["conversations"], issues["issues"]],
                 "source:pull requests": [issues["pull_requests"]["conversations"],
                                          issues["pull_requests"]["pull_requests"]]}
    cells: dict[str, list[float]] = {}
    for cell in dom.select("#sources td[data-metric]"):
        cells.setdefault(cell["data-metric"], []).append(float(cell["data-value"]))
    assert cells == read_kept
    lineage = dom.find("section", id="lineage").get_text()
    report_outs = ("reports/", "plots/report_")  # locked after the page was written
    upstream = {path: md5 for path, md5 in lock_md5s(built).items() if not path.startswith(report_outs)}
    assert upstream and all(md5 in lineage for md5 in upstream.values())


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
