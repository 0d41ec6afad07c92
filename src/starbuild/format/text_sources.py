"""The training stream's sources other than code: tables whose rows are one document each.

Such a table (data/sources/notebooks, data/sources/issues, data/sources/pull_requests: the clean_sources
stage's outs) has `repo_name` and `text`, the text without `<|endoftext|>`: each kept row becomes
`text<|endoftext|>`, as a code document ends. Which rows, how often and in which split follow the source's
conf/mixture/ entry and epochs.py; rows are read a shard at a time in table order, and the fractional
epoch's rank cut is found by DuckDB over the whole table, so memory holds one shard and the source's
repository names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.format.epochs import extra_count, val_cut
from starbuild.format.mixture import MixtureSource

# The columns every text source's table has.
REQUIRED_COLUMNS = ("repo_name", "text")


def check_table(ctx: StageContext, name: str, source: MixtureSource) -> None:
    """Fail in one line when a source's table is not a table of the DAG or not a dep of this stage."""
    table = Path(source.table)
    stages = layout.dag_stages(ctx.root)
    if layout.producer_of(table, ctx.root) is None:
        known = sorted({out.as_posix() for spec in stages.values() for out in layout.declared_paths(spec, "outs")
                        if out.parts[0] == "data"})
        raise StageError(f"mixture.sources.{name}.table: {table} is no stage's output in {layout.DVC_YAML}; "
                         f"name one of {', '.join(known)} in conf/mixture/, or add the stage that writes it")
    if table not in layout.declared_paths(stages[ctx.name], "deps"):
        raise StageError(f"mixture.sources.{name}.table: {table} is not a dep of the {ctx.name} stage; "
                         f"add `- {table}` to its deps in {layout.DVC_YAML}")


def _check_columns(name: str, source: MixtureSource, shard: Path) -> None:
    """Fail in one line when the source names a column its table lacks."""
    present = set(pq.read_schema(shard).names)
    wanted = {"": REQUIRED_COLUMNS, ".key": source.key, ".where": list(source.where),
              ".language_column": [source.language_column] if source.language_column else []}
    for field, columns in wanted.items():
        missing = [column for column in columns if column not in present]
        if missing:
            fix = f"fix mixture.sources.{name}{field} in conf/mixture/" if field else f"rebuild {source.table}"
            raise StageError(f"mixture.sources.{name}: {shard} has no column {', '.join(missing)} "
                             f"(it has {', '.join(sorted(present))}); {fix}")


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """Run `sql` with those of `params` it names (DuckDB refuses a parameter a query does not use)."""
    used = set(re.findall(r"\$(\w+)", sql))
    return con.execute(sql, {key: value for key, value in params.items() if key in used})


@dataclass(frozen=True)
class TextSource:
    """One non-code source, ready to stream: its rows' filter, split and rank, and its fractional epoch's cut."""

    name: str
    spec: MixtureSource
    shards: tuple[Path, ...]
    seed: int
    # The code split's held-out repositories and every repository with code in the stream (one column each).
    held_out: pa.Table
    code_repos: pa.Table
    val_fraction: float
    # Train documents, and the rank of the last one the fractional epoch repeats (None: none is).
    train_docs: int = 0
    last_extra_rank: int | None = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.register("held_out", self.held_out)
        con.register("code_repos", self.code_repos)
        return con

    def _params(self) -> dict[str, Any]:
        return {"seed": str(self.seed), "source": self.name, "language": self.spec.language,
                "val_cut": str(val_cut(self.val_fraction)),
                **{f"w{i}": value for i, value in enumerate(self.spec.where.values())}}

    def _kept(self) -> str:
        """The SQL condition of the rows the source keeps, empty texts included (they are counted, not kept)."""
        return " AND ".join(["true", *(f"{_quoted(column)} = $w{i}" for i, column in enumerate(self.spec.where))])

    def _key(self) -> str:
        return " || chr(0) || ".join(f"coalesce(CAST({_quoted(c)} AS VARCHAR), '')" for c in self.spec.key)

    def _rank(self) -> str:
        """The SQL rank of a row for the fractional epoch: MD5 of seed, source and key (epochs.md5_rank)."""
        return f"md5_number($seed || chr(0) || $source || chr(0) || {self._key()})"

    def _held(self) -> str:
        """The SQL condition of a held-out row (epochs.py: with its repository's code, else by its split rank)."""
        repo = "coalesce(repo_name, '')"
        split_rank = f"md5_number('split' || chr(0) || $seed || chr(0) || $source || chr(0) || {self._key()})"
        return (f"({repo} IN (SELECT repo_name FROM held_out) OR ({repo} NOT IN (SELECT repo_name FROM code_repos)"
                f" AND {split_rank} < CAST($val_cut AS UHUGEINT)))")

    def rows(self, shard: Path) -> Iterator[tuple[str, str | None, str, bool, bool]]:
        """(repo_name, text, language, held out, repeated by the fractional epoch) of each kept row, in order."""
        language = (f"coalesce({_quoted(self.spec.language_column)}, $language)" if self.spec.language_column
                    else "$language")
        params = {**self._params(), "path": str(shard)}
        extra = "false"
        if self.last_extra_rank is not None:
            extra = f"{self._rank()} <= CAST($last AS UHUGEINT)"
            params["last"] = str(self.last_extra_rank)
        table = _execute(self._connect(), f"""
            SELECT coalesce(repo_name, '') AS repo_name, text, {language} AS language, {self._held()} AS held,
                   {extra} AS extra
            FROM read_parquet($path, file_row_number = true) WHERE {self._kept()} ORDER BY file_row_number
            """, params).to_arrow_table()
        for repo, text, lang, held, repeat in zip(*(table.column(i).to_pylist() for i in range(5)), strict=True):
            yield repo, text, lang, bool(held), bool(repeat)

    def with_extra(self) -> TextSource:
        """This source with its train documents counted and its fractional epoch's rank cut found."""
        usable = f"{self._kept()} AND text IS NOT NULL AND text <> ''"
        train = f"SELECT {self._rank()} AS rank FROM read_parquet($paths) WHERE {usable} AND NOT {self._held()}"
        con = self._connect()
        params = {**self._params(), "paths": [str(shard) for shard in self.shards]}
        (train_docs,) = _execute(con, f"SELECT count(*) FROM ({train})", params).fetchone()
        extra = extra_count(self.spec.epochs, int(train_docs))
        last = None
        if extra:
            (rank,) = _execute(con, f"SELECT CAST(rank AS VARCHAR) FROM ({train}) ORDER BY rank LIMIT 1 OFFSET $skip",
                               {**params, "skip": extra - 1}).fetchone()
            last = int(rank)
        return dataclasses.replace(self, train_docs=int(train_docs), last_extra_rank=last)


def _names(names: set[str]) -> pa.Table:
    return pa.table({"repo_name": pa.array(sorted(names), pa.string())})


def open_source(ctx: StageContext, name: str, spec: MixtureSource, seed: int, val_fraction: float,
                held_out: set[str], code_repos: set[str]) -> TextSource:
    """A source (its table already passed `check_table`) with its columns checked, its split rule set and its
    fractional epoch's rank cut found."""
    shards = ctx.input_shards(Path(spec.table), pa.schema([]))
    for shard in shards:
        _check_columns(name, spec, shard)
    source = TextSource(name, spec, tuple(shards), seed, _names(held_out), _names(code_repos), val_fraction)
    return source.with_extra()
