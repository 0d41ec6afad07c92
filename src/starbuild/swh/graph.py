"""The `swh_graph` source: origins of a Software Heritage graph export (ORC tables), contents from the bucket.

Selection follows BigCode's (The Stack v2): an origin's latest `full` visit, in its snapshot the branch HEAD
(through its alias), else refs/heads/main, else refs/heads/master, and that revision's root directory. DuckDB
scans the export's tables lazily (local or s3://), so no table is loaded whole.

Paths are rebuilt once for all selected origins, as BigCode's `find_file_paths.py` did: one recursive query over
`directory_entry` starts from every root directory at once (each level scans the table once, whatever the number
of origins), joins `content` once for `sha1` (the content store's key), and writes the entries sorted by root
and path to a Parquet listing. The listing is cached under a key of the export's files and the roots, so an
interrupted pull resumes without the traversal; each origin's worker reads only its root's rows from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from starbuild.swh.origins import Checkout, OriginFile
from starbuild.swh.records import origin_rows
from starbuild.swh.source import (
    OriginRef,
    OriginSummary,
    SourceConfig,
    fetch_files,
    local_or_url,
    open_content_store,
    repo_name,
    utc,
    write_origin,
)
from starbuild.swh.storage import S3Options, open_location

log = logging.getLogger(__name__)

REQUIRED_TABLES = ("origin", "origin_visit_status", "snapshot_branch", "revision", "directory_entry", "content")
OPTIONAL_TABLES = ("release",)
# Branches tried in order, as BigCode did when GHArchive knew no default branch.
PREFERRED_BRANCHES = (b"HEAD", b"refs/heads/main", b"refs/heads/master")
# BigCode's traversal read at most 64 directory levels.
MAX_DEPTH = 64
# Aliases and releases pointing at aliases and releases: more hops than this is a loop.
MAX_HOPS = 8
PERM_SYMLINK = 0o120000
# The tables the listing is computed from: their files are part of its cache key.
LISTED_TABLES = ("directory_entry", "content")
# Part of the listing's cache key: bump it when the listing's query or columns change.
LISTING_VERSION = 1
# Rows per row group of the listing: small enough that a worker reading one root skips most of the file.
LISTING_ROW_GROUP = 65_536

# Why an origin yields no files; counted in its `skipped` like a file reason.
NO_FULL_VISIT = "no_full_visit"
NO_BRANCH = "no_branch"
NO_REVISION = "no_revision"


@dataclass(frozen=True)
class Selection:
    """What the selection picked for one origin (`OriginRef.ref`), or in `missing` why it picked nothing."""

    url: str
    missing: str | None = None
    snapshot_id: str | None = None
    visit_date: datetime | None = None
    branch_name: str | None = None
    revision_id: str | None = None
    directory_id: str | None = None
    revision_date: datetime | None = None
    committer_date: datetime | None = None
    # The Parquet listing holding the entries of `directory_id` (and of every other selected root).
    listing: Path | None = None


@dataclass(frozen=True)
class Entry:
    """One non-directory entry under a root directory, as the export lists it."""

    path: bytes
    type: str  # file | rev | dir (a directory below MAX_DEPTH, not read)
    perms: int
    sha1: str | None
    length: int | None
    status: str | None


class Export:
    """The tables of a graph export registered in one DuckDB connection (per process: never pickled)."""

    def __init__(self, url: str, s3: S3Options, temp_directory: Path | None = None) -> None:
        self.url = url
        self.fs, self.base = open_location(url, s3)
        # DuckDB spills what does not fit in memory there (by default `.tmp` in the working directory).
        self.con = duckdb.connect(config={"temp_directory": str(temp_directory)} if temp_directory else {})
        self.datasets: dict[str, ds.FileSystemDataset] = {}
        for table in (*REQUIRED_TABLES, *OPTIONAL_TABLES):
            path = f"{self.base}/{table}"
            if self.fs.get_file_info(path).type != pafs.FileType.Directory:
                continue
            self.datasets[table] = ds.dataset(path, format="orc", filesystem=self.fs)
            self.con.register(table, self.datasets[table])
        self.tables = set(self.datasets)
        missing = [t for t in REQUIRED_TABLES if t not in self.tables]
        if missing:
            raise ValueError(f"the graph export {url} lacks the tables {', '.join(missing)} (one directory of ORC "
                             "files each); fix source.graph")

    def query(self, sql: str, params: list[Any] | None = None, **tables: pa.Table) -> list[tuple]:
        """Rows of `sql`, with `tables` registered under their names while it runs."""
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            # Through Arrow: DuckDB's own conversion of zoned timestamps needs pytz, Arrow's does not.
            return [tuple(row.values()) for row in self.con.execute(sql, params or []).to_arrow_table().to_pylist()]
        finally:
            for name in tables:
                self.con.unregister(name)

    def urls(self, wanted: list[str]) -> list[str]:
        """Every origin URL of the export, or those of `wanted` it holds, sorted."""
        if not wanted:
            return [u for (u,) in self.query("SELECT DISTINCT url FROM origin ORDER BY url")]
        rows = self.query("SELECT DISTINCT url FROM origin WHERE url IN (SELECT url FROM wanted) ORDER BY url",
                          wanted=pa.table({"url": pa.array(wanted, pa.string())}))
        return [u for (u,) in rows]

    def latest_full_visits(self, urls: list[str]) -> dict[str, tuple[str, datetime]]:
        """url → (snapshot, date) of its latest visit that ended `full` with a snapshot."""
        rows = self.query(
            """SELECT origin, snapshot, date FROM origin_visit_status
               WHERE status = 'full' AND snapshot IS NOT NULL AND origin IN (SELECT url FROM wanted)
               QUALIFY row_number() OVER (PARTITION BY origin ORDER BY date DESC, visit DESC, snapshot) = 1""",
            wanted=pa.table({"url": pa.array(urls, pa.string())}))
        return {origin: (snapshot, date) for origin, snapshot, date in rows}

    def branches(self, pairs: Iterable[tuple[str, bytes]]) -> dict[tuple[str, bytes], tuple[str | None, str]]:
        """(snapshot, branch name) → (target, target_type) for those of `pairs` the export holds."""
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        wanted = pa.table({"snapshot_id": pa.array([s for s, _ in pairs], pa.string()),
                           "name": pa.array([n for _, n in pairs], pa.binary())})
        rows = self.query(
            """SELECT b.snapshot_id, b.name, b.target, b.target_type FROM snapshot_branch b
               SEMI JOIN wanted w ON b.snapshot_id = w.snapshot_id AND b.name = w.name
               ORDER BY 1, 2, 4, 3""", wanted=wanted)
        found: dict[tuple[str, bytes], tuple[str | None, str]] = {}
        for snapshot, name, target, target_type in rows:
            found.setdefault((snapshot, bytes(name)), (target, target_type))
        return found

    def targets(self, table: str, columns: str, ids: Iterable[str]) -> dict[str, tuple]:
        """id → `columns` of `table` for each of `ids` it holds (the first row of an id, deterministically)."""
        ids = sorted(set(ids))
        if not ids or table not in self.tables:
            return {}
        rows = self.query(f"SELECT id, {columns} FROM {table} WHERE id IN (SELECT id FROM wanted) ORDER BY ALL",
                          wanted=pa.table({"id": pa.array(ids, pa.string())}))
        found: dict[str, tuple] = {}
        for row in rows:
            found.setdefault(row[0], tuple(row[1:]))
        return found

    def files(self, table: str) -> list[tuple[str, int, int | None]]:
        """(path, size, mtime in ns where the filesystem gives one) of every file of `table`, by path."""
        # One listing of the table's directory, not one request per file (on S3 each would be a HEAD); only
        # the files the dataset reads count (it skips hidden ones such as `_SUCCESS`).
        listed = self.fs.get_file_info(pafs.FileSelector(f"{self.base}/{table}", recursive=True))
        read = set(self.datasets[table].files)
        return sorted((f.path, f.size, f.mtime_ns) for f in listed if f.path in read)

    def write_listing(self, roots: list[str], destination: Path) -> None:
        """Every non-directory entry under each of `roots` with its path and content row, to Parquet by root, path."""
        self.con.register("roots", pa.table({"root": pa.array(roots, pa.string())}))
        try:
            self.con.execute(f"""COPY ({LISTING_QUERY}) TO '{sql_string(destination)}'
                                 (FORMAT parquet, ROW_GROUP_SIZE {LISTING_ROW_GROUP})""")
        finally:
            self.con.unregister("roots")


# Each row of `tree` is an entry of a directory `depth` levels down its root (the root itself: depth 0), so
# every level is one join of the entries found so far with `directory_entry`, for all roots together.
LISTING_QUERY = f"""
    WITH RECURSIVE tree(root, type, target, path, perms, depth) AS (
      SELECT DISTINCT root, 'dir', root, ''::BLOB, NULL::INTEGER, 0 FROM roots
      UNION ALL
      SELECT t.root, e.type, e.target, if(t.depth = 0, e.name, t.path || '/'::BLOB || e.name), e.perms, t.depth + 1
      FROM tree t JOIN directory_entry e ON e.directory_id = t.target
      WHERE t.type = 'dir' AND t.depth < {MAX_DEPTH})
    SELECT x.root, x.path, x.type, x.perms, c.sha1, c.length, c.status
    -- An equality on a computed key keeps this a hash join (a condition on x.type would make it a nested loop).
    FROM tree x LEFT JOIN content c ON c.sha1_git = if(x.type = 'file', x.target, NULL)
    -- a directory is listed only where it is too deep to be read
    WHERE x.depth > 0 AND (x.type <> 'dir' OR x.depth >= {MAX_DEPTH})
    -- an id listed twice in `content`: prefer the visible row
    QUALIFY row_number() OVER (
      PARTITION BY x.root, x.path ORDER BY (c.status = 'visible') DESC NULLS LAST, c.sha1) = 1
    ORDER BY x.root, x.path"""


def sql_string(path: Path) -> str:
    """`path` as the body of a SQL string literal."""
    return str(path).replace("'", "''")


def listing_key(export: Export, roots: list[str]) -> str:
    """sha256 of what the listing depends on: the export, its listed tables' files and the sorted roots."""
    key = {"version": LISTING_VERSION, "max_depth": MAX_DEPTH, "export": export.url,
           "files": {table: export.files(table) for table in LISTED_TABLES}, "roots": sorted(set(roots))}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def ensure_listing(export: Export, roots: list[str], directory: Path) -> Path:
    """The listing of `roots` in `directory`, computed and written whole unless a previous pull left it there."""
    path = directory / f"{listing_key(export, roots)}.parquet"
    if path.is_file():
        log.info("graph listing reused: %s (%s)", path, listing_size(path))
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        export.write_listing(sorted(set(roots)), partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    log.info("graph listing of %d roots written: %s (%s)", len(set(roots)), path, listing_size(path))
    return path


def listing_size(path: Path) -> str:
    """The entries and bytes of a listing, for the log."""
    return f"{pq.ParquetFile(path).metadata.num_rows} entries, {path.stat().st_size / 2**20:.1f} MiB"


def read_listing(listing: Path, root: str) -> list[Entry]:
    """The entries of one root from a listing, by path."""
    # The listing is sorted by root: DuckDB reads only the row groups whose statistics may hold `root`.
    with duckdb.connect() as con:
        rows = con.execute("""SELECT path, type, perms, sha1, length, status FROM read_parquet(?)
                              WHERE root = ? ORDER BY path""", [str(listing), root]).to_arrow_table().to_pylist()
    return [Entry(r["path"], r["type"], r["perms"], r["sha1"], r["length"], r["status"]) for r in rows]


def resolve_branch(snapshot: str, branches: Mapping[tuple[str, bytes], tuple[str | None, str]]
                   ) -> tuple[bytes, str, str] | None:
    """(branch name, target, target_type) of the first preferred branch that leads to a revision or release."""
    for name in PREFERRED_BRANCHES:
        for _ in range(MAX_HOPS):
            found = branches.get((snapshot, name))
            if found is None or found[0] is None:
                break
            target, target_type = found
            if target_type != "alias":
                if target_type in ("revision", "release"):
                    return name, target, target_type
                break
            name = alias_name(target)
    return None


def alias_name(target: str) -> bytes:
    """The branch an alias names: SWH's exporter writes it hex-encoded like an id; a plain name is accepted too."""
    try:
        return bytes.fromhex(target)
    except ValueError:
        return target.encode("utf-8")


def alias_targets(snapshots: Iterable[str], branches: Mapping[tuple[str, bytes], tuple[str | None, str]]
                  ) -> set[tuple[str, bytes]]:
    """The branches the preferred branches' aliases name that are not looked up yet."""
    wanted = set()
    for snapshot in snapshots:
        for name in PREFERRED_BRANCHES:
            for _ in range(MAX_HOPS):
                found = branches.get((snapshot, name))
                if found is None or found[1] != "alias" or found[0] is None:
                    break
                name = alias_name(found[0])
                if (snapshot, name) not in branches:
                    wanted.add((snapshot, name))
                    break
    return wanted


class GraphSource:
    """Origins of a graph export (`source.kind: swh_graph`), their files from the content store."""

    def __init__(self, cfg: SourceConfig, repo_root: Path) -> None:
        self.cfg = cfg
        self.repo_root = repo_root
        self._export: Export | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the configuration only; each opens the export itself (a DuckDB connection cannot travel).
        return {**self.__dict__, "_export": None}

    def export(self) -> Export:
        """The export's tables, opened on first use in this process."""
        if self._export is None:
            if not self.cfg.graph:
                raise ValueError("source.graph is not set; kind 'swh_graph' reads the export's ORC tables from it")
            spill = self.listings() / "spill"
            spill.mkdir(parents=True, exist_ok=True)
            # One folder per process: DuckDB names its spill files alike in every database.
            self._export = Export(local_or_url(self.cfg.graph, self.repo_root), self.cfg.s3(),
                                  spill / str(os.getpid()))
        return self._export

    def listings(self) -> Path:
        """Where listings are cached: `graph-listings` next to the content cache."""
        return Path(local_or_url(self.cfg.content_cache, self.repo_root)).parent / "graph-listings"

    def origins(self) -> list[OriginRef]:
        """BigCode's selection for every configured origin (all of the export when none), unique by name."""
        if not self.cfg.content_store:
            raise ValueError("source.content_store is not set; kind 'swh_graph' fetches contents from it")
        export = self.export()
        wanted = [str(u) for u in self.cfg.origins]
        urls = export.urls(wanted)
        absent = sorted(set(wanted) - set(urls))
        if absent:
            raise ValueError(f"origins not in the graph export {self.cfg.graph}: {', '.join(absent)}; "
                             "fix source.origins")
        origins = unique_by_name([OriginRef(repo_name(s.url), s) for s in select(export, urls)])
        roots = [o.ref.directory_id for o in origins if o.ref.directory_id]
        if not roots:
            return origins
        listing = ensure_listing(export, roots, self.listings())
        return [replace(o, ref=replace(o.ref, listing=listing)) if o.ref.directory_id else o for o in origins]

    def origin_keys(self, origins: list[OriginRef]) -> list[str]:
        """The work cache's key of each origin (origin_key)."""
        return [self.origin_key(origin) for origin in origins]

    def origin_key(self, origin: OriginRef) -> str:
        """What the origin's rows depend on, for the work cache: its visit's snapshot, branch, revision and
        directory (content-addressed ids, so equal ids mean equal files)."""
        ref: Selection = origin.ref
        fields = (origin.name, ref.url, ref.missing, ref.snapshot_id, ref.branch_name, ref.revision_id,
                  ref.directory_id, str(ref.visit_date), str(ref.revision_date), str(ref.committer_date))
        return hashlib.sha256(repr(fields).encode()).hexdigest()

    def pull_origin(self, origin: OriginRef, destination: Path) -> OriginSummary:
        """Rebuild the selected revision's paths, fetch its files' contents and write its rows."""
        chosen: Selection = origin.ref
        checkout = Checkout(directory_id=chosen.directory_id or "", snapshot_id=chosen.snapshot_id,
                            revision_id=chosen.revision_id, branch_name=chosen.branch_name,
                            visit_date=chosen.visit_date, revision_date=chosen.revision_date,
                            committer_date=chosen.committer_date)
        files: list[OriginFile] = []
        if chosen.missing:
            checkout.skip(chosen.missing)
        else:
            assert chosen.listing is not None and chosen.directory_id is not None
            wanted = plan(read_listing(chosen.listing, chosen.directory_id), self.cfg.max_file_bytes, checkout)
            store = open_content_store(self.cfg, self.repo_root)
            files = fetch_files(store, wanted, self.cfg.download_workers, checkout)
        rows = origin_rows(origin.name, files, checkout, [], self.cfg.row_options())
        return write_origin(origin.name, rows, checkout, [], destination)


def select(export: Export, urls: list[str]) -> list[Selection]:
    """The selection of every url: visit, branch, revision, each step's failure named."""
    visits = export.latest_full_visits(urls)
    snapshots = sorted({snapshot for snapshot, _ in visits.values()})
    branches = export.branches((s, n) for s in snapshots for n in PREFERRED_BRANCHES)
    for _ in range(MAX_HOPS):
        more = alias_targets(snapshots, branches)
        if not more:
            break
        found = export.branches(more)
        branches.update({pair: found.get(pair, (None, "dangling")) for pair in more})
    heads = {s: resolve_branch(s, branches) for s in snapshots}
    revisions = follow_releases(export, {head[1]: head[2] for head in heads.values() if head})
    commits = export.targets("revision", "directory, date, committer_date", revisions.values())
    selections = []
    for url in urls:
        if url not in visits:
            selections.append(Selection(url, NO_FULL_VISIT))
            continue
        snapshot, date = visits[url]
        visit = Selection(url, None, snapshot, utc(date))
        head = heads[snapshot]
        if head is None:
            selections.append(replace(visit, missing=NO_BRANCH))
            continue
        name, target, _ = head
        branch = replace(visit, branch_name=name.decode("utf-8", "replace"))
        revision = revisions.get(target)
        directory, revision_date, committer_date = commits.get(revision or "", (None, None, None))
        if not directory:
            selections.append(replace(branch, missing=NO_REVISION))
            continue
        selections.append(replace(branch, revision_id=revision, directory_id=directory,
                                  revision_date=utc(revision_date), committer_date=utc(committer_date)))
    return selections


def follow_releases(export: Export, targets: Mapping[str, str]) -> dict[str, str]:
    """Branch target → the revision it leads to (a revision itself, or a release's target), where known."""
    resolved = {t: t for t, kind in targets.items() if kind == "revision"}
    pending = {t: t for t, kind in targets.items() if kind == "release"}
    for _ in range(MAX_HOPS):
        if not pending:
            break
        releases = export.targets("release", "target, target_type", pending.values())
        following: dict[str, str] = {}
        for start, release in pending.items():
            target, kind = releases.get(release, (None, None))
            if kind == "revision":
                resolved[start] = target
            elif kind == "release":
                following[start] = target
        pending = following
    return resolved


def unique_by_name(origins: list[OriginRef]) -> list[OriginRef]:
    """One origin per name (e.g. `…/repo` and `…/repo.git`): a usable one, latest visit, then smallest URL."""
    def preference(o: OriginRef) -> tuple:
        chosen: Selection = o.ref
        visit = chosen.visit_date.timestamp() if chosen.visit_date else float("-inf")
        return (o.name, chosen.missing is not None, -visit, chosen.url)

    kept: dict[str, OriginRef] = {}
    for origin in sorted(origins, key=preference):
        if origin.name in kept:
            log.info("origin %s has the name %s of %s; skipped", origin.ref.url, origin.name, kept[origin.name].ref.url)
            continue
        kept[origin.name] = origin
    return list(kept.values())


def plan(entries: list[Entry], max_file_bytes: int, checkout: Checkout) -> list[tuple[str, str, bool]]:
    """The files to fetch as (path, sha1, executable); every other entry counted in `checkout` by reason."""
    wanted = []
    for entry in entries:
        reason = entry_skip_reason(entry, max_file_bytes)
        if reason:
            checkout.skip(reason)
            continue
        assert entry.sha1 is not None
        wanted.append((entry.path.decode("utf-8"), entry.sha1, bool(entry.perms & 0o111)))
    return wanted


def entry_skip_reason(entry: Entry, max_file_bytes: int) -> str | None:
    """Why an entry is not fetched, in the order the local source checks (kind, name, content, size), or None."""
    if entry.type == "rev":
        return "submodule"
    if entry.type == "dir":
        return "too_deep"
    if entry.perms & 0o170000 == PERM_SYMLINK:
        return "symlink"
    try:
        entry.path.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable_path"
    if entry.sha1 is None or entry.length is None or entry.status != "visible":
        return "content_missing"
    if entry.length >= max_file_bytes:
        return "too_large"
    return None
