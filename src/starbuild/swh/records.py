"""Turn an origin's files into rows of the raw table, skipping bad files by named reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starbuild.swh import licenses
from starbuild.swh.hashing import content_swhid, sha1_git, sha1_hex
from starbuild.swh.languages import classify
from starbuild.swh.origins import Origin, OriginFile, Snapshot

SOURCE_ENCODING = "UTF-8"


def skip_reason(file: OriginFile, max_file_bytes: int) -> str | None:
    """Why a file is not pulled (a name or content that is not UTF-8, binary, too large), or None to keep it."""
    try:
        # A name that is not UTF-8 reaches Python with surrogate escapes, which no string column holds.
        file.path.encode("utf-8")
    except UnicodeEncodeError:
        return "undecodable_path"
    if len(file.data) >= max_file_bytes:
        return "too_large"
    if b"\0" in file.data:
        return "binary"
    try:
        file.data.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable"
    return None


def file_row(file: OriginFile, origin: Origin) -> dict[str, Any]:
    """The raw-table row of a kept file; origin-level columns are filled by `finish_rows`."""
    content_id = sha1_git(file.data).hex()
    kind = classify(file.path, file.data)
    return {
        "blob_id": sha1_hex(file.data),
        "content_id": content_id,
        "swhid": content_swhid(content_id),
        "repo_name": origin.name,
        "path": file.path,
        "language": kind.language,
        "is_vendor": kind.is_vendor,
        "is_generated": kind.is_generated,
        "license_type": licenses.classify(origin.licenses),
        "detected_licenses": list(origin.licenses),
        "src_encoding": SOURCE_ENCODING,
        "length_bytes": len(file.data),
        "is_executable": file.executable,
        "content": file.data.decode("utf-8"),
    }


def finish_rows(rows: list[dict[str, Any]], snapshot: Snapshot) -> list[dict[str, Any]]:
    """Add what is known only after the whole origin was walked, and sort by path."""
    revision_date = (
        datetime.fromtimestamp(snapshot.revision_date, tz=UTC) if snapshot.revision_date is not None else None
    )
    for row in rows:
        row["directory_id"] = snapshot.directory_id
        row["revision_id"] = snapshot.revision_id
        row["revision_date"] = revision_date
    return sorted(rows, key=lambda r: r["path"])
