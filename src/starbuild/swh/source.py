"""Sources of origins and what they share: the `source` config section and writing an origin's rows.

A source turns `cfg.source` into a list of origins and pulls one origin at a time into an Arrow file
of raw rows (every source through `records.origin_rows`, so the table means the same whatever filled
it); the pull stage shards and orders the result. A new source is one class in a module of this
package and one entry in `sources.SOURCES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import pyarrow as pa

from starbuild.core import schemas
from starbuild.swh import licenses
from starbuild.swh.content_store import ContentCache, ContentError, ContentStore
from starbuild.swh.hashing import directory_swhid, snapshot_swhid
from starbuild.swh.origins import WHOLE, Checkout, OriginFile, Part
from starbuild.swh.records import RowOptions
from starbuild.swh.storage import S3Options, local_or_url


@dataclass(frozen=True)
class SourceConfig:
    """The `source` config section. Keys a kind does not use are ignored; each source checks its own."""

    kind: str
    # Files of this size or more are skipped and counted (The Stack v2 fetched blobs under 10 MB).
    max_file_bytes: int
    # Raw shards are cut when they reach this many content bytes.
    shard_target_bytes: int
    # Names never part of a local origin (glob patterns).
    exclude: list[str]
    # local: directories/git repositories; swh_graph, swh_api: origin URLs (empty = every origin of the export).
    origins: list[Any]
    # Users and repositories never pulled: a file of `owner` or `owner/repo` lines (a pull dep in dvc.yaml).
    opt_out: str
    # Encodings tried (Python codec names) for files that are not UTF-8; the detector picks among them.
    encodings: list[str]
    # askalono's confidence (0–1) below which a license file's text is not taken as that license.
    license_min_score: float
    # askalono, or scancode (The Stack v2's detector; the scancode extra).
    license_detector: str = "askalono"
    # swh_graph: the graph export (ORC tables), a local directory or s3://bucket/prefix.
    graph: str | None = None
    # stack_v2: Parquet files (or directories of them) with The Stack v2's columns.
    index: list[str] = field(default_factory=list)
    # swh_graph, stack_v2: where contents live, keyed by sha1, gzip: a directory, s3://… or http(s)://….
    content_store: str | None = None
    # Contents fetched once are kept here (by sha1), so an interrupted pull resumes without re-downloading.
    content_cache: str = ".cache/starbuild/content"
    # S3 endpoint for a non-AWS server (MinIO, a test's moto) and unsigned requests (the public SWH bucket).
    s3_endpoint: str | None = None
    s3_anonymous: bool = True
    s3_region: str = "us-east-1"
    # swh_api: the Web API root; the token comes from $SWH_AUTH_TOKEN, never from config.
    api_url: str = "https://archive.softwareheritage.org/api/1/"
    # Concurrent downloads per origin (content store and API).
    download_workers: int = 8
    # Seconds before one HTTP request is given up (and retried).
    request_timeout: float = 30.0
    # Tries per request for retryable failures (429, 5xx, timeouts) before the object counts as failed.
    request_retries: int = 6

    def __post_init__(self) -> None:
        from starbuild.swh.sources import SOURCES  # the registry imports every source, which imports this

        if self.kind not in SOURCES:
            raise ValueError(f"kind '{self.kind}' is unknown; choose one of: {', '.join(SOURCES)}")
        for key in ("max_file_bytes", "shard_target_bytes", "download_workers", "request_retries"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.license_detector not in licenses.DETECTORS:
            raise ValueError(f"license_detector '{self.license_detector}' is unknown; choose one of: "
                             f"{', '.join(licenses.DETECTORS)}")
        if not 0.0 <= self.license_min_score <= 1.0:
            raise ValueError(f"license_min_score must be in [0, 1], got {self.license_min_score}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")

    def s3(self) -> S3Options:
        """The section's S3 settings."""
        return S3Options(self.s3_endpoint, self.s3_anonymous, self.s3_region)

    def row_options(self) -> RowOptions:
        """What `records.origin_rows` needs from this section."""
        return RowOptions(self.max_file_bytes, tuple(self.encodings), self.license_min_score,
                          self.license_detector)


@dataclass(frozen=True)
class OriginRef:
    """An origin of a remote source: its name and the source's own handle for it (a URL, an id)."""

    name: str
    ref: Any = None


@dataclass(frozen=True)
class OriginSummary:
    """What pulling one origin produced, for the stage's metrics."""

    name: str
    directory_swhid: str | None
    snapshot_swhid: str | None
    revision_id: str | None
    branch_name: str | None
    declared_licenses: list[str]
    detected_licenses: list[str]
    files_by_license_type: dict[str, int]
    files: int
    bytes: int
    skipped: dict[str, int]
    languages: dict[str, int]


def combine_summaries(parts: list[OriginSummary]) -> OriginSummary:
    """One origin's summary from those of the tasks that pulled its parts."""
    def summed(dicts: list[dict[str, int]]) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in dicts:
            for key, n in counts.items():
                total[key] = total.get(key, 0) + n
        return total

    return replace(
        parts[0],
        detected_licenses=sorted({i for p in parts for i in p.detected_licenses}),
        files_by_license_type=summed([p.files_by_license_type for p in parts]),
        files=sum(p.files for p in parts),
        bytes=sum(p.bytes for p in parts),
        skipped=summed([p.skipped for p in parts]),
        languages=summed([p.languages for p in parts]),
    )


class Source(Protocol):
    """Where origins come from and how one origin's files are pulled."""

    def origins(self) -> list[Any]:
        """Every origin to pull (each with a unique `.name`), in a fixed order."""
        ...

    def pull_origin(self, origin: Any, destination: Path) -> OriginSummary:
        """Write the origin's raw rows, sorted by path, to the staged file `destination` (`write_rows`)."""
        ...


def pull_one(task: tuple[Source, Any, Part, Path]) -> OriginSummary:
    """One task of the pull stage: an origin whole, or a part of it. It lives here, not in the stage's module,
    so that a worker unpickling it imports only the sources' own modules (a fifth of a second less each)."""
    source, origin, part, destination = task
    if part == WHOLE:
        return source.pull_origin(origin, destination)
    return source.pull_origin(origin, destination, part)  # only sources with `file_counts` get parts


def write_origin(name: str, rows: list[dict[str, Any]], checkout: Checkout, declared: list[str],
                 destination: Path) -> OriginSummary:
    """Write an origin's rows to `destination` and summarise them."""
    write_rows(rows, destination)
    languages: dict[str, int] = {}
    license_types: dict[str, int] = {}
    detected: set[str] = set()
    for row in rows:
        key = row["language"] or "unknown"
        languages[key] = languages.get(key, 0) + 1
        license_types[row["license_type"]] = license_types.get(row["license_type"], 0) + 1
        detected.update(row["detected_licenses"])
    return OriginSummary(
        name=name,
        directory_swhid=directory_swhid(checkout.directory_id) if checkout.directory_id else None,
        snapshot_swhid=snapshot_swhid(checkout.snapshot_id) if checkout.snapshot_id else None,
        revision_id=checkout.revision_id,
        branch_name=checkout.branch_name,
        declared_licenses=list(declared),
        detected_licenses=sorted(detected),
        files_by_license_type=license_types,
        files=len(rows),
        bytes=sum(r["length_bytes"] for r in rows),
        skipped=dict(checkout.skipped),
        languages=languages,
    )


# Rows per record batch of a staged file: the batches the cut into shards reads one at a time.
STAGED_BATCH_ROWS = 256


def write_rows(rows: list[dict[str, Any]], destination: Path) -> None:
    """Raw rows to the Arrow IPC file `destination`, staged for the pull stage's cut into shards."""
    # Column by column: twice as fast as from_pylist. Arrow's own file format, uncompressed: the file is read
    # once, by the cut that writes the compressed shards; zstd took a fifth of a task, and even uncompressed
    # Parquet took twice as long to write and to read back.
    columns = {name: [row[name] for row in rows] for name in schemas.RAW.names}
    table = pa.table(columns, schema=schemas.RAW)
    with pa.OSFile(str(destination), "wb") as sink, pa.ipc.new_file(sink, schemas.RAW) as writer:
        writer.write_table(table, max_chunksize=STAGED_BATCH_ROWS)


def read_rows(staged: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of a file `write_rows` staged, one at a time."""
    with pa.OSFile(str(staged)) as source:
        reader = pa.ipc.open_file(source)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def repo_name(url: str) -> str:
    """The Stack v2's name of an origin URL: `owner/repo` on GitHub, else the URL without its scheme."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if (parsed.hostname or "").lower() in ("github.com", "www.github.com") and len(parts) == 2:
        return f"{parts[0]}/{parts[1].removesuffix('.git')}"
    return url.split("://", 1)[-1].rstrip("/")


def utc(value: datetime | None) -> datetime | None:
    """A timestamp as a UTC-aware datetime (exports and indexes store naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def open_content_store(cfg: SourceConfig, repo_root: Path) -> ContentStore:
    """The configured content store behind the local cache."""
    if not cfg.content_store:
        raise ValueError(f"source.content_store is not set; kind '{cfg.kind}' fetches contents from it")
    cache = ContentCache(Path(local_or_url(cfg.content_cache, repo_root)))
    return ContentStore(local_or_url(cfg.content_store, repo_root), cache, cfg.s3(), cfg.request_timeout,
                        cfg.request_retries)


def fetch_files(store: ContentStore, wanted: list[tuple[str, str, bool]], workers: int,
                checkout: Checkout) -> list[OriginFile]:
    """The files (path, sha1, executable) whose contents could be had; the rest counted by reason."""
    fetched = store.fetch_many((sha1 for _, sha1, _ in wanted), workers)
    files = []
    for path, sha1, executable in wanted:
        result = fetched[sha1]
        if isinstance(result, ContentError):
            checkout.skip(result.reason)
        else:
            files.append(OriginFile(path, result, executable))
    return files
