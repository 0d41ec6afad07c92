"""An origin's files to rows of the raw table, as The Stack v2 computed them, with every drop counted.

Every source ends here, so the raw table means the same whichever source filled it: ids from the bytes,
text decoded to UTF-8 (`src_encoding` says from what), go-enry's language and flags, and licenses found
in license files, propagated to the files under their directory and classified by BigCode's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starbuild.swh import licenses
from starbuild.swh.decoding import UTF8, Decoded, decode
from starbuild.swh.hashing import content_swhid, sha1_git, sha1_hex
from starbuild.swh.languages import classify
from starbuild.swh.origins import Checkout, OriginFile


@dataclass(frozen=True)
class RowOptions:
    """What decides whether and how a file becomes a row (from the `source` config section)."""

    max_file_bytes: int
    # Candidate encodings (Python codec names) for files that are not UTF-8, most likely first.
    encodings: Sequence[str]
    # askalono's confidence below which a license file's text is not taken as that license.
    license_min_score: float
    # Who reads license files: askalono (default) or ScanCode (the scancode extra), as licenses.DETECTORS.
    license_detector: str = licenses.ASKALONO


def skip_reason(file: OriginFile, max_file_bytes: int) -> str | None:
    """Why a file is not pulled before decoding it (a name that is not UTF-8, too large), or None."""
    try:
        # A name that is not UTF-8 reaches Python with surrogate escapes, which no string column holds.
        file.path.encode("utf-8")
    except UnicodeEncodeError:
        return "undecodable_path"
    if len(file.data) >= max_file_bytes:
        return "too_large"
    return None


def origin_rows(repo_name: str, files: list[OriginFile], checkout: Checkout, declared: list[str],
                options: RowOptions, *, known: Mapping[str, Mapping[str, Any]] | None = None,
                context: Sequence[OriginFile] = ()) -> list[dict[str, Any]]:
    """The rows of an origin's kept files, sorted by path; every dropped file is counted in `checkout`.

    `known` maps a path to columns a source already has for it (The Stack v2's index): its `src_encoding`
    decodes the file, and its KNOWN_COLUMNS replace the computed ones. `context` holds the origin's
    license files that another task pulls (a part of a large origin): they license `files` as well.
    """
    known = known or {}
    kept: list[tuple[OriginFile, Decoded]] = []
    for file in files:
        reason = skip_reason(file, options.max_file_bytes)
        decoded = None if reason else _decode(file.data, known.get(file.path, {}), options.encodings)
        if decoded is None:
            checkout.skip(reason or ("binary" if b"\0" in file.data else "undecodable"))
        else:
            kept.append((file, decoded))
    readable = kept + [(file, text) for file in context if skip_reason(file, options.max_file_bytes) is None
                       and (text := _decode(file.data, known.get(file.path, {}), options.encodings)) is not None]
    found = {
        file.path: licenses.detect(file.path, text.text, options.license_min_score, options.license_detector)
        for file, text in readable if licenses.is_license_file(file.path)
    }
    detected = licenses.propagate(found, [file.path for file, _ in kept])

    # One thread: threads over the files gained nothing even alone (the GIL-held Python per file dominates),
    # and the stage spreads origins, and parts of large ones, over worker processes instead.
    rows = [_with_known(file_row(repo_name, file, text, detected[file.path], declared, checkout),
                        known.get(file.path, {})) for file, text in kept]
    return sorted(rows, key=lambda r: r["path"])


# Columns a source may know better than this module (The Stack v2 annotated them with go-enry and ScanCode).
KNOWN_COLUMNS = ("language", "is_vendor", "is_generated", "detected_licenses", "license_type")


def _decode(data: bytes, known: Mapping[str, Any], encodings: Sequence[str]) -> Decoded | None:
    """`data` as text: in the encoding the source names (as The Stack v2's `.decode(src_encoding)`), else detected."""
    codec = known.get("src_encoding")
    if not codec:
        return decode(data, encodings)
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None
    # NUL characters mark binary data whatever the codec, as in `decode`.
    return Decoded(text, codec) if "\0" not in text else None


def _with_known(row: dict[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with the KNOWN_COLUMNS the source gave for its path."""
    row.update({key: known[key] for key in KNOWN_COLUMNS if key in known})
    return row


def file_row(repo_name: str, file: OriginFile, text: Decoded, detected: list[str], declared: list[str],
             checkout: Checkout) -> dict[str, Any]:
    """The raw-table row of one kept file (its `content` the text's UTF-8 bytes)."""
    content_id = file.content_id or sha1_git(file.data).hex()
    kind = classify(file.path, file.data)
    # The content as its UTF-8 bytes: a file read as UTF-8 already is them, and Arrow takes bytes for a string
    # column at half the cost of a str (whose UTF-8 form it would build again).
    content = file.data if text.encoding == UTF8 else text.text.encode("utf-8")
    return {
        "blob_id": sha1_hex(file.data),
        "content_id": content_id,
        "swhid": content_swhid(content_id),
        "repo_name": repo_name,
        "path": file.path,
        "directory_id": checkout.directory_id,
        "snapshot_id": checkout.snapshot_id,
        "revision_id": checkout.revision_id,
        "branch_name": checkout.branch_name,
        "visit_date": checkout.visit_date,
        "revision_date": checkout.revision_date,
        "committer_date": checkout.committer_date,
        "star_events_count": checkout.stars,
        "fork_events_count": checkout.forks,
        "language": kind.language,
        "is_vendor": kind.is_vendor,
        "is_generated": kind.is_generated,
        "license_type": licenses.license_type(detected, declared),
        "detected_licenses": detected,
        "src_encoding": text.encoding,
        "length_bytes": len(content),
        "is_executable": file.executable,
        "content": content,
    }
