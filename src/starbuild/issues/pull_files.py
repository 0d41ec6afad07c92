"""The files each pull request's head commits changed, with their base and head texts from the content store.

GHArchive events name a PR's head and base commits but not its files. The Stack v2 took them from
Software Heritage (the two revisions' directories compared); starbuild reads them from a changed-files
table, JSON lines (optionally gzip) or Parquet, one row per file a head commit changed relative to its
base:

    {"repo_name": "owner/repo", "base_sha": "<commit>", "head_sha": "<commit>", "path": "src/x.py",
     "base_blob_id": "<sha1 of the base content>", "head_blob_id": "<sha1 of the head content>"}

A null blob id is a file the head added (no base) or deleted (no head): The Stack v2 rendered neither, and
both are counted (`added_or_deleted`). Contents come by sha1 through the pull stage's content store
(`starbuild.swh.content_store`: a directory, `s3://…` or `http(s)://…`, with its local cache); a content
that is missing, corrupt or not UTF-8 is counted by reason and its file left out, and a PR left with no
file is dropped by the renderer (`no_diff`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from starbuild.issues.pull_render import FileDiff
from starbuild.swh.content_store import ContentError, ContentStore
from starbuild.swh.languages import classify

COLUMNS = ("repo_name", "base_sha", "head_sha", "path", "base_blob_id", "head_blob_id")
# (repo_name, base_sha, head_sha): one head commit of a PR against its base.
CommitPair = tuple[str, str, str]


@dataclass(frozen=True)
class ChangedFile:
    """One row of the changed-files table."""

    path: str
    base_blob_id: str | None
    head_blob_id: str | None


class ChangedFilesError(ValueError):
    """The changed-files table cannot be read as one."""


def _reader(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "read_parquet"
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")):
        return "read_json"
    raise ChangedFilesError(f"{path}: name it *.parquet or *.jsonl[.gz]")


def read_changed_files(path: Path, pairs: Iterable[CommitPair]) -> dict[CommitPair, list[ChangedFile]]:
    """The changed files of each wanted commit pair (by path), reading only those rows from the table."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    con = duckdb.connect()
    con.register("wanted", pa.table({name: [pair[i] for pair in wanted] for i, name in enumerate(COLUMNS[:3])}))
    columns = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in COLUMNS)
    try:
        rows = con.execute(f"""
            SELECT {columns} FROM {_reader(path)}($path) AS t
            SEMI JOIN wanted USING (repo_name, base_sha, head_sha)
            ORDER BY repo_name, base_sha, head_sha, path""", {"path": str(path)}).fetchall()
    except duckdb.Error as err:
        raise ChangedFilesError(f"{path}: {str(err).splitlines()[0]} (columns needed: {', '.join(COLUMNS)})") from err
    files: dict[CommitPair, list[ChangedFile]] = defaultdict(list)
    for repo, base, head, file_path, base_blob, head_blob in rows:
        files[(repo, base, head)].append(ChangedFile(file_path, base_blob, head_blob))
    return dict(files)


def _text(blob: str, fetched: dict[str, bytes | ContentError], counts: Counter[str]) -> str | None:
    data = fetched[blob]
    if isinstance(data, ContentError):
        counts[data.reason] += 1
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        counts["undecodable"] += 1
        return None


def load_diffs(changed: dict[CommitPair, list[ChangedFile]], store: ContentStore, workers: int,
               counts: Counter[str]) -> dict[CommitPair, list[FileDiff]]:
    """Each commit pair's files with base and head texts; what could not be had is counted by reason."""
    blobs = {blob for files in changed.values() for f in files for blob in (f.base_blob_id, f.head_blob_id) if blob}
    fetched = store.fetch_many(blobs, workers, desc="PR files")
    diffs: dict[CommitPair, list[FileDiff]] = {}
    for pair, files in changed.items():
        diffs[pair] = []
        for changed_file in files:
            if not changed_file.base_blob_id or not changed_file.head_blob_id:
                counts["added_or_deleted"] += 1
                continue
            base = _text(changed_file.base_blob_id, fetched, counts)
            head = _text(changed_file.head_blob_id, fetched, counts)
            if base is None or head is None:
                continue
            language = classify(changed_file.path, fetched[changed_file.base_blob_id]).language  # type: ignore[arg-type]
            diffs[pair].append(FileDiff(changed_file.path, base, head, language))
            counts["files"] += 1
    return diffs
