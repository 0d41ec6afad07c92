"""The format stage: repository documents, their seeded file order, FIM, and the split by repository and bytes."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from omegaconf import open_dict

from starbuild.core import layout
from starbuild.core.schemas import CLEAN, DOCS, SchemaMismatch
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.format.repo_docs import split_key
from starbuild.format.stage import run_format
from starbuild.special_tokens import END_OF_TEXT, FILE_SEP, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, REPO_NAME
from tests.factories import code_only, file_bytes, raw_row, raw_table, with_overrides, write_table


@pytest.fixture(scope="module")
def smoke_cfg(smoke_cfg):
    """These tests are about code documents: the mixture is code alone (tests/test_mixture.py: the sources)."""
    return code_only(smoke_cfg)


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


def unfim(chunk: str) -> str:
    """A file chunk as it was before FIM: PSM `<pre>P<suf>S<mid>M` and SPM `<pre><suf>S<mid>PM` are both P+M+S."""
    if not chunk.startswith(FIM_PREFIX):
        return chunk
    prefix, rest = chunk[len(FIM_PREFIX) :].split(FIM_SUFFIX)
    suffix, middle = rest.split(FIM_MIDDLE)
    return prefix + middle + suffix


def parse(text: str) -> tuple[str | None, list[str | tuple[str, str]]]:
    """(repo_name or None, files): (path, content) pairs with metadata, contents without; FIM undone."""
    assert text.endswith(END_OF_TEXT) and text.count(END_OF_TEXT) == 1
    body = text[: -len(END_OF_TEXT)]
    if body.startswith(REPO_NAME):
        repo, *chunks = body[len(REPO_NAME) :].split(FILE_SEP)
        return repo, [tuple(unfim(chunk).split("\n", 1)) for chunk in chunks]
    assert body.startswith(FILE_SEP)
    return None, [unfim(chunk) for chunk in body.split(FILE_SEP)[1:]]


def expected_val(repos: dict[str, list[tuple[str, str]]], seed: int, fraction: float) -> set[str]:
    """The documented rule: in split-key order, every repository that keeps val within its share of bytes."""
    sizes = {name: sum(len(text.encode()) for _, text in files) for name, files in repos.items()}
    budget, used, held = fraction * sum(sizes.values()), 0, set()
    for name in sorted(sizes, key=lambda n: (split_key(seed, n), n))[:-1]:
        if used + sizes[name] <= budget:
            held.add(name)
            used += sizes[name]
    return held


def test_one_document_per_repo_and_split_by_repo_and_bytes(tmp_path, make_context, smoke_cfg):
    repos = repo_files(40)
    write_clean(tmp_path, repos)
    cfg = with_overrides(smoke_cfg, format={"docs_per_shard": 6})
    run_format(make_context("format", cfg))

    docs = read_docs(tmp_path)
    held = expected_val(repos, cfg.seed, cfg.format.val_fraction)
    assert 3 <= len(held) <= 8
    assert {d["repo_name"] for d in docs["val"]} == held
    assert {d["repo_name"] for d in docs["train"]} == set(repos) - held
    assert [d["repo_name"] for d in docs["train"]] == sorted(set(repos) - held)
    train_shards = list_shards(tmp_path / layout.DOCS / "train")
    assert [read_shard(p).num_rows for p in train_shards[:-1]] == [6] * (len(train_shards) - 1)
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
    train_bytes, val_bytes = (sum(d["length_bytes"] for d in docs[split]) for split in ("train", "val"))
    sizes = {name: sum(len(text.encode()) for _, text in files) for name, files in repos.items()}
    fim = metrics.pop("fim_files"), metrics.pop("fim_docs")
    assert metrics.pop("sources") == {"code": {"epochs": 1.0, "train_docs": 40 - len(held), "val_docs": len(held),
                                               "train_bytes": train_bytes, "val_bytes": val_bytes}}
    assert metrics == {
        "repos": 40,
        "train_repos": 40 - len(held),
        "val_repos": len(held),
        "train_docs": 40 - len(held),
        "val_docs": len(held),
        "train_bytes": train_bytes,
        "val_bytes": val_bytes,
        "val_byte_share": round(sum(sizes[name] for name in held) / sum(sizes.values()), 4),
        "files": sum(map(len, repos.values())),
        "repos_split": 0,
        "dropped": {"missing_repo_name": 0},
        "language_caps": {},  # no capped language (conf/mixture/) among these Python files
    }
    layouts = [chunk for split in docs.values() for d in split for chunk in d["text"].split(FILE_SEP)
               if chunk.startswith(FIM_PREFIX)]
    assert fim[0]["psm"] + fim[0]["spm"] == len(layouts)
    assert fim[0]["spm"] <= sum(c.startswith(FIM_PREFIX + FIM_SUFFIX) for c in layouts)
    assert fim[1] == sum(FIM_PREFIX in d["text"] for split in docs.values() for d in split)


def test_two_large_repositories_cannot_make_val_larger_than_train(tmp_path, make_context, smoke_cfg):
    # The case seen on ten real repositories: the first two by split key are by far the largest.
    names = [f"real/repo{i}" for i in range(10)]
    ranked = sorted(names, key=lambda n: (split_key(smoke_cfg.seed, n), n))
    repos = {name: [(f"f{f}.py", f"x = {f}  # {name}\n" * (400 if name in ranked[:2] else 20)) for f in range(3)]
             for name in names}
    write_clean(tmp_path, repos)
    run_format(make_context("format"))
    metrics = json.loads((tmp_path / "metrics/format.json").read_text())
    assert 0 < metrics["val_byte_share"] <= smoke_cfg.format.val_fraction
    assert not {d["repo_name"] for d in read_docs(tmp_path)["val"]} & set(ranked[:2])
    assert metrics["val_bytes"] < metrics["train_bytes"]


def test_fim_layouts_keep_every_character_and_never_touch_the_repo_name(tmp_path, make_context, smoke_cfg):
    repos = repo_files(30)
    write_clean(tmp_path, repos)
    for spm_rate, marker in ((0.0, "psm"), (1.0, "spm")):
        fim = {"rate": 1.0, "file_rate": 1.0, "spm_rate": spm_rate}
        run_format(make_context("format", with_overrides(smoke_cfg, format={"fim": fim, "metadata_probability": 1.0})))
        for doc in (d for split in read_docs(tmp_path).values() for d in split):
            header, *chunks = doc["text"][: -len(END_OF_TEXT)].split(FILE_SEP)
            assert header == REPO_NAME + doc["repo_name"]
            assert all(chunk.startswith(FIM_PREFIX) for chunk in chunks)
            # SPM always opens with both tokens; PSM only when the prefix is empty (a cut at 0).
            spm_like = sum(chunk.startswith(FIM_PREFIX + FIM_SUFFIX) for chunk in chunks)
            assert spm_like == len(chunks) if marker == "spm" else spm_like < len(chunks) or len(chunks) == 1
            assert sorted(tuple(unfim(c).split("\n", 1)) for c in chunks) == sorted(repos[doc["repo_name"]])
        metrics = json.loads((tmp_path / "metrics/format.json").read_text())
        assert metrics["fim_files"][marker] == metrics["files"] and metrics["fim_docs"] == 30


def test_fim_rates_as_starcoder2(tmp_path, make_context, smoke_cfg):
    repos = repo_files(300)
    write_clean(tmp_path, repos, per_shard=100)
    run_format(make_context("format"))
    metrics = json.loads((tmp_path / "metrics/format.json").read_text())
    # Half the documents are candidates, half of a candidate's files are transformed, half of those SPM.
    assert 0.4 < metrics["fim_docs"] / 300 < 0.6
    candidate_files = metrics["files"] / 2
    transformed = metrics["fim_files"]["psm"] + metrics["fim_files"]["spm"]
    assert 0.35 < transformed / candidate_files < 0.65
    assert 0.35 < metrics["fim_files"]["spm"] / transformed < 0.65
    run_format(make_context("format", with_overrides(smoke_cfg, format={"fim": {"rate": 0.0}})))
    assert not any(FIM_PREFIX in d["text"] for split in read_docs(tmp_path).values() for d in split)


def test_a_large_repository_becomes_several_documents_at_file_boundaries(tmp_path, make_context, smoke_cfg):
    big = {"big/repo": [(f"m{f}.py", f"value_{f} = {f}\n" * 30) for f in range(10)],
           "small/repo": [("a.py", "print('a')\n")], "other/repo": [("b.py", "print('b')\n")]}
    big["big/repo"].append(("huge.py", "z = 0\n" * 400))
    write_clean(tmp_path, big)
    cfg = with_overrides(smoke_cfg, format={"max_doc_bytes": 1000, "metadata_probability": 1.0, "fim": {"rate": 0.0}})
    run_format(make_context("format", cfg))
    docs = [d for split in read_docs(tmp_path).values() for d in split if d["repo_name"] == "big/repo"]
    assert len(docs) > 3 and sum(d["n_files"] for d in docs) == 11
    files = []
    for doc in docs:
        repo, parsed = parse(doc["text"])
        assert repo == "big/repo"
        files += parsed
        chunk_bytes = sum(len(f"{path}\n{content}".encode()) for path, content in parsed)
        assert chunk_bytes <= 1000 or doc["n_files"] == 1
    assert sorted(files) == sorted(big["big/repo"])
    assert json.loads((tmp_path / "metrics/format.json").read_text())["repos_split"] == 1


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
    cfg = with_overrides(smoke_cfg, format={"metadata_probability": probability, "fim": {"rate": 0.0}})
    run_format(make_context("format", cfg))
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


def md5_rank(seed: int, repo: str, path: str) -> int:
    """The caps' seeded order, computed apart from DuckDB: the MD5 digest as a little-endian integer."""
    return int.from_bytes(hashlib.md5(f"{seed}\0{repo}\0{path}".encode()).digest(), "little")


def capped_reference(rows: list[dict], cap: int, seed: int) -> set[tuple[str, str]]:
    """The files a cap keeps: in rank order while their bytes fit."""
    kept, total = set(), 0
    for row in sorted(rows, key=lambda r: md5_rank(seed, r["repo_name"], r["path"])):
        if total + row["length_bytes"] > cap:
            break
        total += row["length_bytes"]
        kept.add((row["repo_name"], row["path"]))
    return kept


@pytest.mark.parametrize("per_shard", [1, 5, 100])
def test_language_caps_cut_within_one_file_the_same_for_any_sharding(tmp_path, make_context, smoke_cfg, per_shard):
    repos = {f"org{r:02d}/proj": [(f"src/M{f}.java", f"class M{r}x{f} {{}}\n" + "//" * (r * 7 + f * 13))
                                  for f in range(1 + r % 4)] for r in range(12)}
    repos["org99/py"] = [("a.py", "print(1)\n")]
    rows = [{**clean_row(repo, path, text), "language": "Python" if path.endswith(".py") else "Java"}
            for repo in sorted(repos) for path, text in sorted(repos[repo])]
    write_table(tmp_path / layout.CLEAN, [rows[i:i + per_shard] for i in range(0, len(rows), per_shard)], CLEAN)
    java = [r for r in rows if r["language"] == "Java"]
    cap = sum(r["length_bytes"] for r in java) // 3
    cfg = copy.deepcopy(smoke_cfg)
    with open_dict(cfg):  # new keys in a composed (struct) config
        cfg.mixture.language_caps = {"Java": cap, "Python": 0}
    cfg.format.fim.rate = 0.0  # files whole, so each one's first line can be found in the documents
    run_format(make_context("format", cfg))
    seed = int(cfg.seed)
    kept = capped_reference(java, cap, seed)
    kept_bytes = sum(r["length_bytes"] for r in java if (r["repo_name"], r["path"]) in kept)
    first_dropped = min((r for r in java if (r["repo_name"], r["path"]) not in kept),
                        key=lambda r: md5_rank(seed, r["repo_name"], r["path"]))
    assert kept_bytes <= cap < kept_bytes + first_dropped["length_bytes"]  # within one file of the cap
    metrics = json.loads((tmp_path / layout.metrics_file("format")).read_text())
    assert metrics["language_caps"]["Java"] == {"files_before": len(java), "bytes_before": sum(
        r["length_bytes"] for r in java), "files_after": len(kept), "bytes_after": kept_bytes}
    assert metrics["language_caps"]["Python"]["files_after"] == 0 and metrics["files"] == len(kept)
    texts = "".join(doc["text"] for split in read_docs(tmp_path).values() for doc in split)
    in_docs = {(repo, path) for repo, files in repos.items() for path, text in files if text.split("\n")[0] in texts}
    assert in_docs == kept  # and the capped-to-nothing Python file is gone
