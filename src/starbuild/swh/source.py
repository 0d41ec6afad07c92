"""Sources of origins. `local` pulls directories and git repositories on this machine.

A source turns `cfg.source` into a list of origins and pulls one origin at a time into a
Parquet file of raw rows; the pull stage shards and orders the result. The full Software
Heritage sources (graph export, The Stack v2 index, Web API) plug in here as further kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from starbuild.core import schemas
from starbuild.swh import licenses
from starbuild.swh.hashing import directory_swhid
from starbuild.swh.origins import Origin, OriginFile, resolve, walk_directory, walk_git
from starbuild.swh.records import file_row, finish_rows, skip_reason


@dataclass(frozen=True)
class SourceConfig:
    """The `source` config section; `origins` entries are checked when they are resolved."""

    kind: str
    # Files of this size or more are skipped and counted.
    max_file_bytes: int
    # Raw shards are cut when they reach this many content bytes.
    shard_target_bytes: int
    # Names never part of an origin (glob patterns).
    exclude: list[str]
    origins: list[Any]
    # Users and repositories never pulled: a file of `owner` or `owner/repo` lines (a pull dep in dvc.yaml).
    opt_out: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise ValueError(f"kind '{self.kind}' is unknown; choose one of: {', '.join(SOURCES)}")
        for key in ("max_file_bytes", "shard_target_bytes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class OriginSummary:
    """What pulling one origin produced, for the stage's metrics."""

    name: str
    directory_swhid: str
    revision_id: str | None
    license_type: str
    licenses: list[str]
    files: int
    bytes: int
    skipped: dict[str, int]
    languages: dict[str, int]


class Source(Protocol):
    """Where origins come from and how one origin's files are pulled."""

    def origins(self) -> list[Origin]:
        """Every origin to pull, in a fixed order."""
        ...

    def pull_origin(self, origin: Origin, destination: Path) -> OriginSummary:
        """Write the origin's raw rows, sorted by path, to the Parquet file `destination`."""
        ...


class LocalSource:
    """Origins that are local directories or git repositories (`source.kind: local`)."""

    def __init__(self, cfg: SourceConfig, repo_root: Path) -> None:
        self.cfg = cfg
        self.repo_root = repo_root

    def origins(self) -> list[Origin]:
        """Resolve every configured origin; names must be unique."""
        origins = [resolve(entry, i, self.repo_root) for i, entry in enumerate(self.cfg.origins)]
        names = [o.name for o in origins]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"origin names must be unique in source.origins; repeated: {', '.join(duplicates)}")
        return sorted(origins, key=lambda o: o.name)

    def pull_origin(self, origin: Origin, destination: Path) -> OriginSummary:
        """Walk the origin, keep its text files and write their rows to `destination`."""
        rows: list[dict[str, Any]] = []
        dropped: dict[str, int] = {}
        max_bytes = self.cfg.max_file_bytes

        def on_file(file: OriginFile) -> None:
            reason = skip_reason(file, max_bytes)
            if reason:
                dropped[reason] = dropped.get(reason, 0) + 1
            else:
                rows.append(file_row(file, origin))

        if origin.is_git:
            snapshot = walk_git(origin, on_file)
        else:
            snapshot = walk_directory(origin, list(self.cfg.exclude), on_file)
        rows = finish_rows(rows, snapshot)
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas.RAW), destination)
        languages: dict[str, int] = {}
        for row in rows:
            key = row["language"] or "unknown"
            languages[key] = languages.get(key, 0) + 1
        return OriginSummary(
            name=origin.name,
            directory_swhid=directory_swhid(snapshot.directory_id),
            revision_id=snapshot.revision_id,
            license_type=licenses.classify(origin.licenses),
            licenses=list(origin.licenses),
            files=len(rows),
            bytes=sum(r["length_bytes"] for r in rows),
            skipped={**snapshot.skipped, **dropped},
            languages=languages,
        )


SOURCES = {"local": LocalSource}


def make_source(cfg: SourceConfig, repo_root: Path) -> Source:
    """The source named by `source.kind` (SourceConfig checks that it is one of SOURCES)."""
    return SOURCES[cfg.kind](cfg, repo_root)
