"""The training mixture: every source in data/docs with its epochs, the split rule, and metrics/mixture.json."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.core import layout, schemas
from starbuild.core.stage import StageError
from starbuild.format.stage import run_format
from starbuild.mixture.stage import run_mixture
from starbuild.special_tokens import END_OF_TEXT, ISSUE_START, JUPYTER_SCRIPT, JUPYTER_START, PR_EVENT
from starbuild.tokenizer import bpe
from starbuild.tokenizer.stage import run_tokenizer
from tests.factories import file_bytes, raw_row, stage_context, table_rows, with_overrides, write_table

TEXT_SOURCES = ("issues", "jupyter_scripts", "jupyter_structured", "pull_requests")


def md5_int(*parts: object) -> int:
    """MD5 of the NUL-joined parts as a little-endian integer: the documented ranks, computed apart."""
    return int.from_bytes(hashlib.md5("\0".join(map(str, parts)).encode()).digest(), "little")


def write_corpus(root: Path, per_shard: int) -> dict[str, list[dict]]:
    """Code of 12 repositories (some with a JavaScript file), notebooks and issues of code and codeless repos."""
    code = []
    for r in range(12):
        repo = f"org{r:02d}/proj"
        for f in range(1 + r % 3):
            code.append({**raw_row(repo, f"m{f}.py", f"def f{r}_{f}(x):\n    return x * {r + f}\n"),
                         "pii_redactions": 0})
        if r % 4 == 0:
            code.append({**raw_row(repo, "app.js", f"console.log({r});\n", language="JavaScript"), "pii_redactions": 0})
    code.sort(key=lambda row: (row["repo_name"], row["path"]))
    repos = [f"org{r:02d}/proj" for r in range(0, 12, 2)] + [f"solo{i:02d}/x" for i in range(30)]
    notebooks = [{"blob_id": f"{i:040x}", "repo_name": repo, "path": f"nb{i}.ipynb", "license_type": "permissive",
                  "format": fmt, "language": "R" if fmt == "jupyter_script" and i % 5 == 0 else "Python",
                  "text": (JUPYTER_SCRIPT if fmt == "jupyter_script" else JUPYTER_START) + f"x = {i}\n"}
                 for i, repo in enumerate(repos) for fmt in ("jupyter_script", "jupyter_structured")]
    issues = [{"repo_name": repo, "number": n, "users": 2, "events": 2,
               "text": f"{ISSUE_START}Title: bug {n} in {repo}\nusername_0: it fails"}
              for repo in repos for n in (1, 2)]
    issues.append({"repo_name": "solo00/x", "number": 9, "users": 1, "events": 1, "text": ""})
    pulls = [{"repo_name": repo, "number": 100 + n, "events": 3, "base_files": 1,
              "text": f"{PR_EVENT}Title: fix {n} in {repo}\nusername_0: a fix"} for repo in repos for n in (1, 2, 3)]
    # The other sources as the clean_sources stage writes them (the mixture reads those).
    tables = {layout.CLEAN: (code, schemas.CLEAN), layout.CLEAN_NOTEBOOKS: (notebooks, schemas.CLEAN_NOTEBOOKS),
              layout.CLEAN_ISSUES: (issues, schemas.CLEAN_ISSUES),
              layout.CLEAN_PULL_REQUESTS: (pulls, schemas.CLEAN_PULL_REQUESTS)}
    for table, (rows, schema) in tables.items():
        rows = [{"pii_redactions": 0, **row} for row in rows]
        write_table(root / table, [rows[i:i + per_shard] for i in range(0, len(rows), per_shard)], schema)
    return {"code": code, "notebooks": notebooks, "issues": issues, "pull_requests": pulls}


def mixture_cfg(cfg: DictConfig, **epochs: float) -> DictConfig:
    """`cfg` with some sources' epochs set."""
    return with_overrides(cfg, mixture={"sources": {name: {"epochs": e} for name, e in epochs.items()}})


def docs(root: Path) -> list[dict]:
    return [row for split in layout.SPLITS for row in table_rows(root / layout.DOCS / split)]


def key_of(source: str, row: dict) -> tuple:
    """The conf's `key` columns of a source's row."""
    if source in ("issues", "pull_requests"):
        return row["repo_name"], row["number"]
    return row["repo_name"], row["path"], row["blob_id"]


def source_rows(corpus: dict[str, list[dict]], source: str) -> list[dict]:
    """The rows of a text source that make documents (non-empty texts, the source's notebook format)."""
    if source in ("issues", "pull_requests"):
        return [row for row in corpus[source] if row["text"]]
    fmt = "jupyter_script" if source == "jupyter_scripts" else "jupyter_structured"
    return [row for row in corpus["notebooks"] if row["format"] == fmt]


def expected_held(corpus: dict[str, list[dict]], source: str, row: dict, seed: int, fraction: float,
                  code_val: set[str]) -> bool:
    """The documented split: with the repository's code when it has code, else by the document's split rank."""
    if row["repo_name"] in {r["repo_name"] for r in corpus["code"]}:
        return row["repo_name"] in code_val
    return md5_int("split", seed, source, *key_of(source, row)) < int(fraction * 2**128)


@pytest.mark.parametrize("epochs", [0.0, 1.0, 2.5])
def test_sources_appear_with_their_epochs_in_their_repository_split(tmp_path, make_context, smoke_cfg, epochs):
    corpus = write_corpus(tmp_path, per_shard=7)
    cfg = mixture_cfg(smoke_cfg, **dict.fromkeys(TEXT_SOURCES, epochs))
    seed, fraction = int(cfg.seed), cfg.format.val_fraction
    run_format(make_context("format", cfg))
    rows = docs(tmp_path)
    code_val = {d["repo_name"] for d in rows if d["source"] == "code" and d["split"] == "val"}
    assert code_val and {d["source"] for d in rows} == {"code", *(TEXT_SOURCES if epochs else ())}
    metrics = json.loads((tmp_path / layout.metrics_file("format")).read_text())
    for source in TEXT_SOURCES:
        texts = {row["text"] + END_OF_TEXT: row for row in source_rows(corpus, source)}
        written = [d for d in rows if d["source"] == source]
        if not epochs:
            assert not written and source not in metrics["sources"]
            continue
        assert all(d["text"] in texts and d["n_files"] == 1 for d in written)
        held = {text for text, row in texts.items() if expected_held(corpus, source, row, seed, fraction, code_val)}
        assert {d["text"] for d in written if d["split"] == "val"} == held
        assert all(d["epoch"] == 0 for d in written if d["split"] == "val")
        train = sorted((text for text in texts if text not in held),
                       key=lambda t: md5_int(seed, source, *key_of(source, texts[t])))
        assert 0 < len(held) < len(texts) and len(train) > 10
        extra = math.floor((epochs % 1) * len(train) + 0.5)
        expected = Counter({text: math.floor(epochs) + (i < extra) for i, text in enumerate(train)})
        assert Counter(d["text"] for d in written if d["split"] == "train") == expected
        # Epoch e holds every document with more than e copies, so copies never sit side by side.
        by_epoch = Counter(d["epoch"] for d in written if d["split"] == "train")
        assert by_epoch == Counter({e: sum(n > e for n in expected.values()) for e in range(math.ceil(epochs))})
        assert metrics["sources"][source]["train_docs"] == sum(expected.values())
        assert metrics["sources"][source]["val_docs"] == len(held)
    assert metrics["sources"].get("issues", {"dropped": {"empty_text": 1}})["dropped"]["empty_text"] == 1
    languages: dict[str, set] = {}
    for d in rows:
        languages.setdefault(d["source"], set()).add(d["language"])
    assert languages == {"code": {None}, **({"issues": {schemas.NO_LANGUAGE}, "jupyter_scripts": {"Python", "R"},
                                             "jupyter_structured": {"Python"},
                                             "pull_requests": {schemas.NO_LANGUAGE}} if epochs else {})}


def test_code_epochs_repeat_whole_repositories_by_rank(tmp_path, make_context, smoke_cfg):
    write_corpus(tmp_path, per_shard=7)
    run_format(make_context("format", mixture_cfg(smoke_cfg, code=1.5)))
    code = [d for d in docs(tmp_path) if d["source"] == "code"]
    seed = int(smoke_cfg.seed)
    train = sorted({d["repo_name"] for d in code if d["split"] == "train"}, key=lambda r: md5_int(seed, "code", r))
    twice = set(train[: math.floor(0.5 * len(train) + 0.5)])
    copies = Counter(d["repo_name"] for d in code if d["split"] == "train")
    assert copies == Counter({repo: 1 + (repo in twice) for repo in train})
    assert all(d["epoch"] == 0 for d in code if d["split"] == "val")
    # A repeated repository draws its file order, metadata and FIM afresh: some copy differs from its first.
    texts = {(d["repo_name"], d["epoch"]): d["text"] for d in code}
    assert any(texts[(repo, 1)] != texts[(repo, 0)] for repo in twice)


def test_the_stream_is_the_same_for_any_input_sharding_and_run(tmp_path, make_context, smoke_cfg):
    cfg = mixture_cfg(smoke_cfg, code=1.5, issues=2.5, jupyter_scripts=0.5)
    snapshots = []
    for per_shard in (1, 5, 5):
        root = tmp_path / f"run{len(snapshots)}"
        write_corpus(root, per_shard)
        run_format(stage_context("format", cfg, root))
        snapshots.append((docs(root), file_bytes(root, layout.DOCS, layout.metrics_file("format"))))
    assert snapshots[0][0] == snapshots[1][0] == snapshots[2][0]
    assert snapshots[0][1] == snapshots[1][1]  # shard boundaries of the output are fixed by docs_per_shard


def test_mixture_metrics_match_an_independent_count(tmp_path, make_context, smoke_cfg):
    corpus = write_corpus(tmp_path, per_shard=7)
    cfg = mixture_cfg(smoke_cfg, code=2.0, issues=1.5)
    cfg.mixture.language_caps = {"JavaScript": 0}
    run_format(make_context("format", cfg))
    run_tokenizer(make_context("tokenizer", cfg))
    run_mixture(make_context("mixture", cfg))
    metrics = json.loads((tmp_path / layout.metrics_file("mixture")).read_text())
    tokenizer = bpe.load_tokenizer(tmp_path / layout.TOKENIZER)

    def n(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    rows = docs(tmp_path)
    total = sum(n(d["text"]) for d in rows if d["split"] == "train")
    assert metrics["train_tokens"] == total
    for source, entry in metrics["sources"].items():
        mine = [d for d in rows if d["source"] == source]
        for split in layout.SPLITS:
            assert entry[f"{split}_docs"] == sum(d["split"] == split for d in mine)
            assert entry[f"{split}_tokens"] == sum(n(d["text"]) for d in mine if d["split"] == split)
        assert entry["share"] == round(entry["train_tokens"] / total, 6)
        if source == "code":
            continue
        unique = sum(n(d["text"]) for d in mine if d["epoch"] == 0)
        trained = sum(n(d["text"]) for d in mine if d["split"] == "train")
        totals = {key: sum(counts[key] for counts in entry["languages"].values())
                  for key in ("before_caps", "after_caps", "after_epochs")}
        assert totals == {"before_caps": unique, "after_caps": unique, "after_epochs": trained}
    code_train = {d["repo_name"] for d in rows if d["source"] == "code" and d["split"] == "train"}
    expected: dict[str, Counter] = {}
    for row in corpus["code"]:
        tally = expected.setdefault(row["language"], Counter())
        tokens = n(row["content"])
        tally["before_caps"] += tokens
        kept = row["language"] != "JavaScript"  # capped to nothing
        tally["after_caps"] += tokens * kept
        tally["after_epochs"] += tokens * kept * 2 * (row["repo_name"] in code_train)
    assert metrics["sources"]["code"]["languages"] == {lang: dict(t) for lang, t in expected.items()}
    assert metrics["sources"]["code"]["languages"]["JavaScript"]["before_caps"] > 0
    notebooks_python = sum(metrics["sources"][name]["languages"]["Python"]["before_caps"]
                           for name in ("jupyter_scripts", "jupyter_structured"))
    assert notebooks_python > metrics["sources"]["jupyter_structured"]["tokens"]["before_caps"]
    assert metrics["languages"]["Python"]["before_caps"] == expected["Python"]["before_caps"] + notebooks_python
    assert sum(entry["share"] for entry in metrics["sources"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("source", "override", "message"), [
    ("issues", {"epochs": -1.0}, r"^mixture\.sources\.issues\.epochs must be a number >= 0 .*; fix conf/mixture/$"),
    ("issues", {"table": "data/isues"}, r"^mixture\.sources\.issues\.table: data/isues is no stage's output in "
                                        r"dvc\.yaml; name one of .*data/issues.* in conf/mixture/"),
    ("issues", {"table": "data/filtered"}, r"^mixture\.sources\.issues\.table: data/filtered is not a dep of the "
                                           r"format stage; add `- data/filtered` to its deps in dvc\.yaml$"),
    ("issues", {"key": ["repo_name", "nmber"]}, r"^mixture\.sources\.issues: .* has no column nmber .*; "
                                                r"fix mixture\.sources\.issues\.key in conf/mixture/$"),
    ("code", {"key": ["path"]}, r"^mixture\.sources\.code: the code source .* takes only `epochs`"),
])
def test_bad_mixture_config_fails_in_one_line_naming_the_fix(tmp_path, make_context, smoke_cfg, source, override,
                                                              message):
    write_corpus(tmp_path, per_shard=50)
    cfg = with_overrides(smoke_cfg, mixture={"sources": {source: override}})
    with pytest.raises(StageError, match=message) as err:
        run_format(make_context("format", cfg))
    assert "\n" not in str(err.value)
    assert not (tmp_path / layout.DOCS).exists()
