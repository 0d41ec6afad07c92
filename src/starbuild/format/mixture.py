"""The training mixture (StarCoder2 §4): which sources the training stream holds, how often, and per-language caps.

`mixture.sources` names each source: a table directory, optionally a row filter, and its `epochs`. The
source whose table is data/clean is code, rendered as repository documents; every other source is a table
with `repo_name` and `text` whose rows become one document each (epochs.py, code_source.py,
text_sources.py).

StarCoder2 cut its largest languages before building repository documents (Java and JavaScript to 200 GB,
HTML to 100 GB, JSON, XML and YAML to 8 GB; conf/mixture/). Here a capped language keeps its files in a
seeded order (the MD5 of the seed, repository and path) while their bytes stay within the cap, so the cut
lands within one file of it, is the same on every machine and for any sharding, and is one rank per language.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa
from omegaconf import MISSING

from starbuild.core import layout
from starbuild.core.schemas import NO_LANGUAGE
from starbuild.core.shards import read_shard

# The table of code files: the source that names it is rendered as repository documents.
CODE_TABLE = layout.CLEAN.as_posix()


@dataclass
class MixtureSource:
    """One source of the training stream (`mixture.sources.<name>`; not frozen: Hydra merges into it)."""

    # The table directory its documents come from (data/clean: code, as repository documents).
    table: str = MISSING
    # How often its train documents appear: floor(epochs) times each, plus once more for a seeded MD5-ranked
    # subset of round(fraction * documents); 0 leaves the source out (train and val).
    epochs: float = 1.0
    # Rows kept: column -> value, all equal (e.g. {format: jupyter_script}); empty keeps every row.
    where: dict[str, Any] = field(default_factory=dict)
    # The columns that name one document (its rank for the fractional epoch); not for code.
    key: list[str] = field(default_factory=list)
    # The language of its documents in metrics/mixture.json (schemas.NO_LANGUAGE: none); not for code.
    language: str = NO_LANGUAGE
    # A column naming each document's language, where the table has one; null values fall back to `language`.
    language_column: str | None = None

    @property
    def is_code(self) -> bool:
        """Whether this is the code source (repository documents of data/clean)."""
        return PurePosixPath(self.table) == PurePosixPath(CODE_TABLE)


def _check_source(name: str, source: MixtureSource) -> None:
    """Fail with one line naming `sources.<name>` and the fix when a source is malformed."""
    epochs = source.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int | float) or not 0 <= epochs < math.inf:
        raise ValueError(f"sources.{name}.epochs must be a number >= 0 (0 leaves the source out), got {epochs!r}")
    table = PurePosixPath(source.table)
    if not source.table or table.is_absolute() or ".." in table.parts or table.parts[0] != "data":
        raise ValueError(f"sources.{name}.table must be a table directory under data/ (e.g. data/issues), "
                         f"got {source.table!r}")
    if source.is_code:
        if source.where or source.key or source.language_column:
            raise ValueError(f"sources.{name}: the code source ({CODE_TABLE}) takes only `epochs`; "
                             "remove its where/key/language_column")
        return
    if not source.key or not all(isinstance(column, str) and column for column in source.key):
        raise ValueError(f"sources.{name}.key must list the columns that name one document, "
                         f"e.g. [repo_name, number], got {source.key!r}")


@dataclass
class MixtureConfig:
    """The `mixture` config section (not frozen: Hydra merges conf/mixture/ into it)."""

    # Bytes (the files' `length_bytes`) kept at most per go-enry language; a language not listed is not capped.
    language_caps: dict[str, int] = field(default_factory=dict)
    # The sources of the training stream by name; documents are written in name order.
    sources: dict[str, MixtureSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for language, cap in self.language_caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ValueError(f"language_caps.{language} must be a whole number of bytes >= 0, got {cap!r}")
        for name, source in self.sources.items():
            _check_source(name, source)
        code = [name for name, source in self.sources.items() if source.is_code]
        if len(code) > 1:
            raise ValueError(f"sources: {' and '.join(code)} both name {CODE_TABLE}; keep one")
        if not any(source.epochs > 0 for source in self.sources.values()):
            raise ValueError("sources: no source has epochs > 0, so the training stream would be empty; "
                             "give one (e.g. the code source) epochs: 1")

    def ordered(self) -> list[tuple[str, MixtureSource]]:
        """The sources in the training stream (epochs > 0), in name order (the order documents are written)."""
        return [(name, self.sources[name]) for name in sorted(self.sources) if self.sources[name].epochs > 0]


@dataclass(frozen=True)
class LanguageCut:
    """What a cap left of one language: files and bytes before and after, and the last rank kept (None: none)."""

    files_before: int
    bytes_before: int
    files_after: int
    bytes_after: int
    last_rank: int | None


# A file's place in its language's seeded order. MD5 (not DuckDB's own hash) so the order is a fact of the
# bytes, whatever DuckDB's version; NUL separates the parts so no two (repo, path) pairs collide by joining.
_RANK = "md5_number(CAST($seed AS VARCHAR) || chr(0) || coalesce(repo_name, '') || chr(0) || coalesce(path, ''))"


def language_cuts(shards: Sequence[Path], caps: Mapping[str, int], seed: int) -> dict[str, LanguageCut]:
    """Each capped language's cut over every shard: its files in rank order while their bytes fit the cap."""
    if not caps or not shards:
        return {}
    con = duckdb.connect()
    con.register("caps", pa.table({"language": list(caps), "cap": pa.array(list(caps.values()), pa.int64())}))
    rows = con.execute(f"""
        WITH files AS (
            SELECT language, {_RANK} AS rank, coalesce(length_bytes, 0) AS size
            FROM read_parquet($paths) WHERE language IN (SELECT language FROM caps)),
        running AS (
            SELECT files.*, sum(size) OVER (PARTITION BY language ORDER BY rank ROWS UNBOUNDED PRECEDING) AS total
            FROM files)
        SELECT running.language, count(*), sum(size),
               count(*) FILTER (WHERE total <= cap), coalesce(sum(size) FILTER (WHERE total <= cap), 0),
               max(rank) FILTER (WHERE total <= cap)
        FROM running JOIN caps USING (language) GROUP BY running.language ORDER BY running.language
        """, {"seed": seed, "paths": [str(s) for s in shards]}).fetchall()
    return {language: LanguageCut(int(files), int(size), int(kept), int(kept_size),
                                  None if last is None else int(last))
            for language, files, size, kept, kept_size, last in rows}


def read_marking_caps(shard: Path, columns: Sequence[str], cuts: Mapping[str, LanguageCut], seed: int) -> pa.Table:
    """`columns` of every row of the shard in table order, plus `within_caps`: whether the cuts keep the row."""
    con = duckdb.connect()
    # Ranks are 128-bit: they travel as text and are cast back inside DuckDB.
    con.register("cuts", pa.table({"language": pa.array(list(cuts), pa.string()), "last_rank": pa.array(
        [None if cut.last_rank is None else str(cut.last_rank) for cut in cuts.values()], pa.string())}))
    selected = ", ".join(f't."{c}"' for c in columns)
    return con.execute(f"""
        SELECT {selected},
               coalesce(cuts.language IS NULL
                        OR (cuts.last_rank IS NOT NULL AND {_RANK} <= CAST(cuts.last_rank AS UHUGEINT)), false)
               AS within_caps
        FROM read_parquet($path, file_row_number = true) AS t LEFT JOIN cuts USING (language)
        ORDER BY t.file_row_number
        """, {"seed": seed, "path": str(shard)}).to_arrow_table()


def read_within_caps(shard: Path, columns: Sequence[str], cuts: Mapping[str, LanguageCut], seed: int) -> pa.Table:
    """`columns` of the shard's rows that the cuts keep, in table order (all rows when nothing is capped)."""
    if not cuts:
        return read_shard(shard, columns=list(columns))
    marked = read_marking_caps(shard, columns, cuts, seed)
    return marked.filter(marked.column("within_caps")).drop_columns(["within_caps"])
