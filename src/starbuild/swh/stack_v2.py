"""The `stack_v2` source: The Stack v2's file-level index (Parquet, ids only), contents by `blob_id`.

The index names each file's repository, path and SWH provenance; the bytes come from the content store
(`blob_id` is the SWH sha1, the bucket's key) and are decoded with the row's `src_encoding`, as the dataset
card does. The language, vendor/generated flags and licenses stay as The Stack v2 annotated them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds

from starbuild.swh.origins import Checkout
from starbuild.swh.records import KNOWN_COLUMNS, origin_rows
from starbuild.swh.source import (
    OriginRef,
    OriginSummary,
    SourceConfig,
    fetch_files,
    local_or_url,
    open_content_store,
    utc,
    write_origin,
)
from starbuild.swh.storage import S3Options, open_location

REQUIRED = ("blob_id", "repo_name", "path")
PROVENANCE = ("directory_id", "snapshot_id", "revision_id", "branch_name")
DATES = ("visit_date", "revision_date", "committer_date")
POPULARITY = ("star_events_count", "fork_events_count")
# Kept as the index has them (records.origin_rows takes them as known).
ANNOTATIONS = ("src_encoding", *KNOWN_COLUMNS)
# The Stack v2 has no executable bit; an index written from this project's raw table carries one.
OPTIONAL = (*PROVENANCE, *DATES, *POPULARITY, *ANNOTATIONS, "is_executable")


class Index:
    """The index's Parquet files as one DuckDB view `files` with every column used (per process: never pickled)."""

    def __init__(self, locations: list[str], s3: S3Options) -> None:
        self.con = duckdb.connect()
        parts = []
        for i, location in enumerate(locations):
            fs, base = open_location(location, s3)
            self.con.register(f"part_{i}", ds.dataset(base, format="parquet", filesystem=fs))
            parts.append(f"SELECT * FROM part_{i}")
        # Files may differ in their optional columns: BY NAME fills the absent ones with nulls.
        self.con.execute(f"CREATE VIEW listed AS {' UNION ALL BY NAME '.join(parts)}")
        self.columns = {row[0] for row in self.con.execute("DESCRIBE listed").fetchall()}
        missing = [c for c in REQUIRED if c not in self.columns]
        if missing:
            raise ValueError(f"the index {', '.join(locations)} lacks the columns {', '.join(missing)}; "
                             "fix source.index")
        chosen = [c if c in self.columns else f"NULL AS {c}" for c in (*REQUIRED, *OPTIONAL)]
        self.con.execute(f"CREATE VIEW files AS SELECT {', '.join(chosen)} FROM listed")

    def repo_names(self) -> list[str]:
        """Every repository the index lists, sorted."""
        rows = self.con.execute("SELECT DISTINCT repo_name FROM files WHERE repo_name IS NOT NULL ORDER BY 1")
        return [name for (name,) in rows.fetchall()]

    def digests(self) -> dict[str, str]:
        """Each repository's MD5 over all its index rows in path order: one pass over the index."""
        rows = self.con.execute("SELECT repo_name, md5(string_agg(to_json(f)::VARCHAR, chr(10) "
                                "ORDER BY path, blob_id)) FROM files f WHERE repo_name IS NOT NULL GROUP BY repo_name")
        return dict(rows.fetchall())

    def files(self, repo_name: str) -> list[dict[str, Any]]:
        """The index rows of one repository, by path."""
        query = self.con.execute("SELECT * FROM files WHERE repo_name = ? ORDER BY path, blob_id", [repo_name])
        # Through Arrow: DuckDB's own conversion of zoned timestamps needs pytz, Arrow's does not.
        return query.to_arrow_table().to_pylist()


def checkout_of(rows: list[dict[str, Any]]) -> Checkout:
    """The origin-level ids and dates, from its first row (The Stack v2 takes one revision per repository)."""
    first = rows[0] if rows else {}
    return Checkout(directory_id=first.get("directory_id") or "", snapshot_id=first.get("snapshot_id"),
                    revision_id=first.get("revision_id"), branch_name=first.get("branch_name"),
                    visit_date=utc(first.get("visit_date")), revision_date=utc(first.get("revision_date")),
                    committer_date=utc(first.get("committer_date")), stars=first.get("star_events_count"),
                    forks=first.get("fork_events_count"))


class StackV2Source:
    """Repositories of The Stack v2's index (`source.kind: stack_v2`), their files from the content store."""

    def __init__(self, cfg: SourceConfig, repo_root: Path) -> None:
        self.cfg = cfg
        self.repo_root = repo_root
        self._index: Index | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the configuration only; each opens the index itself (a DuckDB connection cannot travel).
        return {**self.__dict__, "_index": None}

    def index(self) -> Index:
        """The index, opened on first use in this process."""
        if self._index is None:
            if not self.cfg.index:
                raise ValueError("source.index is empty; kind 'stack_v2' lists files from its Parquet files")
            locations = [local_or_url(str(entry), self.repo_root) for entry in self.cfg.index]
            self._index = Index(locations, self.cfg.s3())
        return self._index

    def origins(self) -> list[OriginRef]:
        """Every repository of the index, or the configured ones (`source.origins`, repo names)."""
        if not self.cfg.content_store:
            raise ValueError("source.content_store is not set; kind 'stack_v2' fetches contents from it")
        names = self.index().repo_names()
        wanted = sorted({str(name) for name in self.cfg.origins})
        if wanted:
            absent = sorted(set(wanted) - set(names))
            if absent:
                raise ValueError(f"origins not in the index: {', '.join(absent)}; fix source.origins")
            names = wanted
        return [OriginRef(name, name) for name in names]

    def origin_keys(self, origins: list[OriginRef]) -> list[str]:
        """What each origin's rows depend on, for the work cache: its rows of the index (contents come by
        blob_id, so equal rows mean equal files)."""
        digests = self.index().digests()
        return [hashlib.sha256(f"{origin.name}\0{digests[origin.name]}".encode()).hexdigest() for origin in origins]

    def pull_origin(self, origin: OriginRef, destination: Path) -> OriginSummary:
        """Fetch the repository's files by blob_id and write its rows with the index's annotations."""
        index = self.index()
        listed = index.files(origin.name)
        checkout = checkout_of(listed)
        known: dict[str, dict[str, Any]] = {}
        wanted: list[tuple[str, str, bool]] = []
        for row in listed:
            path = str(row["path"]).removeprefix("/")
            if path in known:
                checkout.skip("duplicate_path")
                continue
            known[path] = annotations(row, index.columns)
            if row["blob_id"] is None:
                checkout.skip("content_missing")
                continue
            wanted.append((path, row["blob_id"], bool(row["is_executable"])))
        store = open_content_store(self.cfg, self.repo_root)
        files = fetch_files(store, wanted, self.cfg.download_workers, checkout)
        rows = origin_rows(origin.name, files, checkout, [], self.cfg.row_options(), known=known)
        return write_origin(origin.name, rows, checkout, [], destination)


def annotations(row: dict[str, Any], columns: set[str]) -> dict[str, Any]:
    """The row's annotations the index has columns for (an absent column is computed, not taken as null)."""
    found = {key: row[key] for key in ANNOTATIONS if key in columns}
    if "detected_licenses" in found and found["detected_licenses"] is None:
        found["detected_licenses"] = []  # the raw table's list column holds no nulls
    return found
