"""The non-code tables the clean_sources stage cleans: where each is read and written, and how its rows are named.

A row's *key* is the columns that identify it (the mixture's `key` in conf/mixture/): it names the row's
near-duplicate cluster member (the smallest key of a cluster is kept) and seeds its IP replacements.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from starbuild.core import layout, schemas

# The column every source's text is in (what is signed, scanned, decontaminated and redacted).
TEXT = "text"
# Joins a key's fields into one sortable string: below every character of a repository name, path or number,
# so comparing the strings compares the keys field by field ("a" < "ab" as ("a", …) < ("ab", …)).
KEY_SEPARATOR = "\x01"
# Digits of a zero-padded key number (int64) or row position, so that text order is number order.
NUMBER_WIDTH = 20


@dataclass(frozen=True)
class Source:
    """One non-code table: its input and output, its key columns and the column that splits its near dedup."""

    name: str
    table: Path
    schema: pa.Schema
    out: Path
    out_schema: pa.Schema
    # The columns naming a row, compared in this order.
    key: tuple[str, ...]
    # Rows are near-deduplicated only against rows with the same value here (None: the whole source).
    group: str | None = None
    # A column of file paths, which tells the PII detectors a config file (None: every row is prose).
    path: str | None = None


SOURCES = (
    # A notebook is compared only with notebooks of its format: a script and its structured twin are not duplicates.
    Source("notebooks", layout.NOTEBOOKS, schemas.NOTEBOOKS, layout.CLEAN_NOTEBOOKS, schemas.CLEAN_NOTEBOOKS,
           key=("repo_name", "path", "blob_id"), group="format", path="path"),
    Source("issues", layout.ISSUES, schemas.ISSUES, layout.CLEAN_ISSUES, schemas.CLEAN_ISSUES,
           key=("repo_name", "number")),
    Source("pull_requests", layout.PULL_REQUESTS, schemas.PULL_REQUESTS, layout.CLEAN_PULL_REQUESTS,
           schemas.CLEAN_PULL_REQUESTS, key=("repo_name", "number")),
)


def _field(value: object) -> str:
    """One key field as sortable text: a number zero-padded, a null as empty."""
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:0{NUMBER_WIDTH}d}"
    return str(value)


def sort_keys(table: pa.Table, source: Source, first_row: int) -> list[str]:
    """Each row's near-dedup id: its key fields, then its position in the source (unique even when keys repeat).

    `first_row` is the table's first row's position in the whole source, so the ids do not depend on shard sizes.
    """
    columns = [table.column(name).to_pylist() for name in source.key]
    return [KEY_SEPARATOR.join([*(_field(value) for value in values), f"{first_row + index:0{NUMBER_WIDTH}d}"])
            for index, values in enumerate(zip(*columns, strict=True))]


def position(sort_key: str) -> int:
    """The row position a `sort_keys` id ends with."""
    return int(sort_key.rsplit(KEY_SEPARATOR, 1)[1])


def row_ids(table: pa.Table, source: Source) -> list[str]:
    """Each row's stable id: the MD5 of the source name and its key fields (seeds its IP replacements)."""
    columns: Sequence[list[object]] = [table.column(name).to_pylist() for name in source.key]
    return [hashlib.md5("\0".join([source.name, *("" if v is None else str(v) for v in values)]).encode(),
                        usedforsecurity=False).hexdigest()
            for values in zip(*columns, strict=True)]
