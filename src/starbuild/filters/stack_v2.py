"""The Stack v2 long-line and alpha filters (StarCoder2 §2.1) as one DuckDB query per shard.

A file is dropped by the first rule it fails, in the order of `REASONS`. Lines are the pieces of
`content` split on '\n' (so a trailing newline adds an empty last line and '\r' counts as a
character); lengths are Unicode code points. "Alphabetic" is the Unicode letter class `\\p{L}`,
which is what Python's `str.isalpha` tests; for `alnum_languages` digits `\\p{N}` count too
(`str.isalnum`). RE2 ships a newer Unicode table than Python 3.11 (14.0), so letters assigned
after 14.0 count here and not in Python; every code point assigned in 14.0 agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

REASONS = ("too_many_lines", "long_lines", "low_alpha")

# Per-file measurements the rules read; `shard` is an Arrow table (row_idx, language, content).
FEATURES_SQL = r"""
SELECT
    row_idx,
    coalesce(list_contains($exempt_languages, language), false) AS exempt,
    length(text) AS n_chars,
    len(line_lengths) AS n_lines,
    list_max(line_lengths) AS max_line_length,
    list_sum(line_lengths) / len(line_lengths) AS avg_line_length,
    CASE WHEN coalesce(list_contains($alnum_languages, language), false)
        THEN length(regexp_replace(text, '[^\p{L}\p{N}]', '', 'g'))
        ELSE length(regexp_replace(text, '[^\p{L}]', '', 'g'))
    END AS letter_chars
FROM (
    SELECT
        row_idx,
        language,
        coalesce(content, '') AS text,
        list_transform(string_split(coalesce(content, ''), chr(10)), lambda line: length(line))
            AS line_lengths
    FROM shard
)
"""

# The first failing rule names the reason; NULL keeps the file.
REASON_SQL = f"""
SELECT
    row_idx,
    CASE
        WHEN n_lines > $max_lines THEN 'too_many_lines'
        WHEN exempt AND max_line_length > $exempt_max_line_length THEN 'long_lines'
        WHEN NOT exempt
            AND (avg_line_length > $max_avg_line_length OR max_line_length > $max_line_length)
            THEN 'long_lines'
        WHEN n_chars = 0 OR letter_chars / n_chars < $min_alpha_fraction THEN 'low_alpha'
    END AS reason
FROM ({FEATURES_SQL})
ORDER BY row_idx
"""


@dataclass(frozen=True)
class Thresholds:
    """The `filter` config section, checked once."""

    max_lines: int
    max_avg_line_length: float
    max_line_length: int
    long_line_exempt_languages: tuple[str, ...]
    exempt_max_line_length: int
    min_alpha_fraction: float
    alnum_languages: tuple[str, ...]

    @classmethod
    def from_cfg(cls, section: Any) -> Thresholds:
        """Build from the composed `filter` section; raise ValueError naming a bad key."""
        try:
            thresholds = cls(
                max_lines=int(section["max_lines"]),
                max_avg_line_length=float(section["max_avg_line_length"]),
                max_line_length=int(section["max_line_length"]),
                long_line_exempt_languages=tuple(str(x) for x in section["long_line_exempt_languages"]),
                exempt_max_line_length=int(section["exempt_max_line_length"]),
                min_alpha_fraction=float(section["min_alpha_fraction"]),
                alnum_languages=tuple(str(x) for x in section["alnum_languages"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"filter config is incomplete or mistyped ({err!r})") from err
        for key in ("max_lines", "max_avg_line_length", "max_line_length", "exempt_max_line_length"):
            if getattr(thresholds, key) <= 0:
                raise ValueError(f"filter.{key} must be > 0")
        if not 0.0 <= thresholds.min_alpha_fraction <= 1.0:
            raise ValueError("filter.min_alpha_fraction must be within [0, 1]")
        return thresholds

    def sql_params(self) -> dict[str, Any]:
        """Named parameters for REASON_SQL."""
        return {
            "max_lines": self.max_lines,
            "max_avg_line_length": self.max_avg_line_length,
            "max_line_length": self.max_line_length,
            "exempt_languages": list(self.long_line_exempt_languages),
            "exempt_max_line_length": self.exempt_max_line_length,
            "min_alpha_fraction": self.min_alpha_fraction,
            "alnum_languages": list(self.alnum_languages),
        }


def _query(con: duckdb.DuckDBPyConnection, sql: str, table: pa.Table, params: dict[str, Any]) -> pa.Table:
    """Run `sql` with the (row_idx, language, content) of `table` registered as `shard`."""
    shard = pa.table(
        {
            "row_idx": pa.array(range(table.num_rows), pa.int64()),
            "language": table.column("language"),
            "content": table.column("content"),
        }
    )
    con.register("shard", shard)
    try:
        return con.execute(sql, params).to_arrow_table()
    finally:
        con.unregister("shard")


def measure(con: duckdb.DuckDBPyConnection, table: pa.Table, thresholds: Thresholds) -> pa.Table:
    """The measurements the rules read, one row per row of `table` (for inspection and tests)."""
    params = {
        key: value for key, value in thresholds.sql_params().items() if key in ("exempt_languages", "alnum_languages")
    }
    return _query(con, FEATURES_SQL + "ORDER BY row_idx", table, params)


def drop_reasons(con: duckdb.DuckDBPyConnection, table: pa.Table, thresholds: Thresholds) -> list[str | None]:
    """The drop reason of every row of `table` (None = keep), in row order."""
    result = _query(con, REASON_SQL, table, thresholds.sql_params())
    return result.column("reason").to_pylist()
