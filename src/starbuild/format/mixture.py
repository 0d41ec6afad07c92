"""The training mixture's per-language byte caps (StarCoder2 §4), applied before the repository documents are built.

StarCoder2 cut its largest languages before building repository documents (Java and JavaScript to 200 GB,
HTML to 100 GB, JSON, XML and YAML to 8 GB; conf/mixture/). Here a capped language keeps its files in a
seeded order (the MD5 of the seed, repository and path) while their bytes stay within the cap, so the cut
lands within one file of it, is the same on every machine and for any sharding, and is one rank per language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from starbuild.core.shards import read_shard


@dataclass
class MixtureConfig:
    """The `mixture` config section (not frozen: Hydra merges conf/mixture/ into it)."""

    # Bytes (the files' `length_bytes`) kept at most per go-enry language; a language not listed is not capped.
    language_caps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for language, cap in self.language_caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise ValueError(f"language_caps.{language} must be a whole number of bytes >= 0, got {cap!r}")


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


def read_within_caps(shard: Path, columns: Sequence[str], cuts: Mapping[str, LanguageCut], seed: int) -> pa.Table:
    """`columns` of the shard's rows that the cuts keep, in table order (all rows when nothing is capped)."""
    if not cuts:
        return read_shard(shard, columns=list(columns))
    con = duckdb.connect()
    # Ranks are 128-bit: they travel as text and are cast back inside DuckDB.
    con.register("cuts", pa.table({"language": list(cuts), "last_rank": pa.array(
        [None if cut.last_rank is None else str(cut.last_rank) for cut in cuts.values()], pa.string())}))
    selected = ", ".join(f't."{c}"' for c in columns)
    return con.execute(f"""
        SELECT {selected} FROM read_parquet($path, file_row_number = true) AS t LEFT JOIN cuts USING (language)
        WHERE cuts.language IS NULL
           OR (cuts.last_rank IS NOT NULL AND {_RANK}
               <= CAST(cuts.last_rank AS UHUGEINT))
        ORDER BY t.file_row_number
        """, {"seed": seed, "path": str(shard)}).to_arrow_table()
