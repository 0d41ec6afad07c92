"""The format stage: repository documents, their seeded file order and the split by repository."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from starbuild.core import layout
from starbuild.core.schemas import CLEAN, DOCS, SchemaMismatch
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.format.repo_docs import END_OF_TEXT, FILE_SEP, REPO_NAME
from starbuild.format.stage import run_format
from tests.factories import file_bytes, raw_row, raw_table, with_overrides, write_table


def clean_row(repo: str, path: str, content: str) -> dict:
    return {**raw_row(repo, path, content), "pii_redactions": 0}


def repo_files(n_repos: int) -> dict[str, list[tuple[str, str]]]:
    """`n_repos` repositories with 1 to 6 files each, keyed by name in sorted order."""
    return {
        f"org{r:02d}/proj": [(f"src/m{f}.py", f"# repo {r} file {f}\nprint({r}, {f})\n") for f in range(1 + r % 6)]
        for r in range(n_repos)
    }


def write_clean(root: Path, repos: dict[str, list[tuple[str, str]]], per_shard: int = 7) -> None:
    """Rows sorted by (repo_name, path), cut every `per_shard` rows so repos span shards."""
    rows = [clean_row(repo, path, text) for repo in sorted(repos) for path, text in sorted(repos[repo])]
    shards = [rows[start : start + per_shard] for start in range(0, len(rows), per_shard)]
    write_table(root / layout.CLEAN, shards, CLEAN)


def read_docs(root: Path) -> dict[str, list[dict]]:
    return {
        split: [row for p in list_shards(root / layout.DOCS / split) for row in read_shard(p).to_pylist()]
        for split in ("train", "val")
    }


def parse(text: str) -> tuple[str | None, list[str | tuple[str, str]]]:
    """(repo_name or None, files): (path, content) pairs with metadata, contents without."""
    assert text.endswith(END_OF_TEXT) and text.count(END_OF_TEXT) == 1
    body = text[: -len(END_OF_TEXT)]
    if body.startswith(REPO_NAME):
        repo, *chunks = body[len(REPO_NAME) :].split(FILE_SEP)
        return repo, [tuple(chunk.split("\n", 1)) for chunk in chunks]
    assert body.startswith(FILE_SEP)
    return None, body.split(FILE_SEP)[1:]


def test_one_document_per_repo_and_split_by_repo(tmp_path, make_context, smoke_cfg):
    repos = repo_files(40)
    write_clean(tmp_path, repos)
    cfg = with_overrides(smoke_cfg, format={"docs_per_shard": 6})
    run_format(make_context("format", cfg))

    docs = read_docs(tmp_path)
    n_val = max(1, round(cfg.format.val_fraction * len(repos)))
    ranked = sorted(repos, key=lambda r: hashlib.sha1(f"{cfg.seed}:{r}".encode()).hexdigest())
    assert {d["repo_name"] for d in docs["val"]} == set(ranked[:n_val])
    assert {d["repo_name"] for d in docs["train"]} == set(ranked[n_val:])
    assert [d["repo_name"] for d in docs["train"]] == sorted(ranked[n_val:])
    train_shards = list_shards(tmp_path / layout.DOCS / "train")
    assert [read_shard(p).num_rows for p in train_shards] == [6] * 5 + [4]
    assert read_shard(train_shards[0]).schema.equals(DOCS)

    with_meta = 0
    shuffled = 0
    for split, split_docs in docs.items():
        for doc in split_docs:
            files = repos[doc["repo_name"]]
            assert doc["split"] == split
            assert doc["n_files"] == len(files)
            assert doc["length_bytes"] == len(doc["text"].encode("utf-8"))
            repo, parsed = parse(doc["text"])
            if repo is None:
                contents = parsed
            else:
                with_meta += 1
                assert repo == doc["repo_name"]
                assert sorted(parsed) == sorted(files)
                contents = [content for _, content in parsed]
            assert sorted(contents) == sorted(content for _, content in files)
            shuffled += contents != [content for _, content in files]
    assert 5 < with_meta < 35, "metadata_probability=0.5 should give both forms"
    assert shuffled > 5, "files should not stay in path order"

    metrics = json.loads((tmp_path / "metrics/format.json").read_text())
    assert metrics == {
        "repos": 40,
        "train_repos": 40 - n_val,
        "val_repos": n_val,
        "train_docs": 40 - n_val,
        "val_docs": n_val,
        "train_bytes": sum(d["length_bytes"] for d in docs["train"]),
        "val_bytes": sum(d["length_bytes"] for d in docs["val"]),
        "files": sum(map(len, repos.values())),
        "dropped": {"missing_repo_name": 0},
    }


def test_document_does_not_depend_on_other_repos(tmp_path, smoke_cfg):
    repos = repo_files(12)
    alone = {name: repos[name] for name in list(repos)[5:7]}
    for root, corpus in ((tmp_path / "all", repos), (tmp_path / "two", alone)):
        write_clean(root, corpus, per_shard=2)
        run_format(StageContext(name="format", cfg=smoke_cfg, root=root, out_root=root))

    def texts(root: Path) -> dict[str, str]:
        return {d["repo_name"]: d["text"] for split in read_docs(root).values() for d in split}

    full, pair = texts(tmp_path / "all"), texts(tmp_path / "two")
    assert pair == {name: full[name] for name in alone}


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_metadata_probability_extremes(tmp_path, make_context, smoke_cfg, probability):
    write_clean(tmp_path, repo_files(10))
    run_format(make_context("format", with_overrides(smoke_cfg, format={"metadata_probability": probability})))
    docs = [d for split in read_docs(tmp_path).values() for d in split]
    starts = {d["text"].startswith(REPO_NAME) for d in docs}
    assert starts == {probability == 1.0}
    text = next(d["text"] for d in docs if d["repo_name"] == "org01/proj")
    a, b = "# repo 1 file 0\nprint(1, 0)\n", "# repo 1 file 1\nprint(1, 1)\n"
    if probability:
        first, second = ("src/m0.py\n" + a, "src/m1.py\n" + b), ("src/m1.py\n" + b, "src/m0.py\n" + a)
        assert text in {f"<repo_name>org01/proj<file_sep>{x}<file_sep>{y}<|endoftext|>" for x, y in (first, second)}
    else:
        assert text in {f"<file_sep>{x}<file_sep>{y}<|endoftext|>" for x, y in ((a, b), (b, a))}


def test_single_repo_is_all_train(tmp_path, make_context):
    write_clean(tmp_path, repo_files(1))
    run_format(make_context("format"))
    docs = read_docs(tmp_path)
    assert len(docs["train"]) == 1 and docs["val"] == []
    assert read_shard(tmp_path / layout.DOCS / "val" / "part-00000.parquet").schema.equals(DOCS)


def test_deterministic(tmp_path, make_context):
    write_clean(tmp_path, repo_files(15))

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.DOCS, layout.metrics_file("format"))

    run_format(make_context("format"))
    first = snapshot()
    run_format(make_context("format"))
    assert snapshot() == first
    assert len(first) == 3


def test_rejects_non_contiguous_repos_and_bad_config(tmp_path, make_context, smoke_cfg):
    out = tmp_path / layout.CLEAN
    out.mkdir(parents=True)
    write_shard(
        raw_table([clean_row("a/x", "1.py", "a"), clean_row("b/y", "1.py", "b")], CLEAN), out / "part-00000.parquet"
    )
    write_shard(raw_table([clean_row("a/x", "2.py", "c")], CLEAN), out / "part-00001.parquet")
    with pytest.raises(StageError, match="'a/x' are not contiguous"):
        run_format(make_context("format"))
    assert not (tmp_path / layout.DOCS).exists()
    with pytest.raises(StageError, match="val_fraction"):
        run_format(make_context("format", with_overrides(smoke_cfg, format={"val_fraction": 1.0})))
    write_shard(
        raw_table([clean_row("a/x", "1.py", "a")], CLEAN).drop_columns(["pii_redactions"]), out / "part-00001.parquet"
    )
    with pytest.raises(SchemaMismatch, match="pii_redactions"):
        run_format(make_context("format"))
