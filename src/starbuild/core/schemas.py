"""The one definition of every table's columns (The Stack v2 names where one exists).

A stage adds columns to the table it reads and never renames them; each schema below is the
previous one plus what its stage adds. Stages validate their input against these at entry.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Files as pulled from an origin (one row per regular text file).
RAW = pa.schema(
    [
        ("blob_id", pa.string()),  # sha1 of the bytes (SWH `sha1`, the S3 key)
        ("content_id", pa.string()),  # sha1_git of the bytes (git blob id)
        ("swhid", pa.string()),  # swh:1:cnt:<content_id>
        ("repo_name", pa.string()),
        ("path", pa.string()),  # path inside the origin, '/'-separated
        ("directory_id", pa.string()),  # sha1_git of the origin's root directory
        ("snapshot_id", pa.string()),  # SWH snapshot of the origin's branches; null for plain directories
        ("revision_id", pa.string()),  # commit for git origins, null for plain directories
        ("branch_name", pa.string()),  # e.g. refs/heads/main; null for plain directories
        ("visit_date", pa.timestamp("us", tz="UTC")),  # SWH visit the files come from; null when not archived
        ("revision_date", pa.timestamp("us", tz="UTC")),  # author date of the revision
        ("committer_date", pa.timestamp("us", tz="UTC")),
        # Repository popularity a source may know (GHArchive's star and fork events); null when it does not.
        ("star_events_count", pa.int64()),
        ("fork_events_count", pa.int64()),
        ("language", pa.string()),  # go-enry's (GitHub Linguist's) name, null when it has none
        ("is_vendor", pa.bool_()),  # go-enry: vendored (node_modules/, vendor/, …)
        ("is_generated", pa.bool_()),  # go-enry: generated (protobuf output, lock files, minified)
        ("license_type", pa.string()),  # permissive | no_license | non_permissive (The Stack v2)
        ("detected_licenses", pa.list_(pa.string())),  # SPDX ids of the license files above the file
        ("src_encoding", pa.string()),  # the encoding of the bytes; `content` is always the UTF-8 text
        ("length_bytes", pa.int64()),  # UTF-8 length of `content`
        ("is_executable", pa.bool_()),
        ("content", pa.large_string()),
    ]
)

# Label of files go-enry could not name (a null `language`), where a table or metric needs a name.
UNKNOWN_LANGUAGE = "unknown"

FILTERED = RAW
# A sample of the files each filter rule drops (`filter.keep_rejects` a rule), for inspection.
FILTER_REJECTS = pa.schema([pa.field("reason", pa.string()), *RAW])
DEDUP = RAW
CLEAN = RAW.append(pa.field("pii_redactions", pa.int32()))

# Why each deduplicated file went: one row per member of every cluster of two or more.
DEDUP_CLUSTERS = pa.schema(
    [
        # repo:<directory_id> | blob:<blob_id> | near:<its smallest member as blob_id:repo_name:path>
        ("cluster_id", pa.string()),
        ("reason", pa.string()),  # exact_repo | exact_blob | near_dup
        ("blob_id", pa.string()),
        ("repo_name", pa.string()),
        ("path", pa.string()),
        ("kept", pa.bool_()),  # the cluster's survivor
        ("cluster_size", pa.int64()),  # repositories for exact_repo, files otherwise
    ]
)

# The pulled Jupyter notebooks in The Stack v2's formats: one row per notebook and format (notebooks stage).
NOTEBOOKS = pa.schema(
    [
        ("blob_id", pa.string()),
        ("repo_name", pa.string()),
        ("path", pa.string()),
        ("license_type", pa.string()),
        ("format", pa.string()),  # jupyter_script | jupyter_structured
        ("language", pa.string()),  # go-enry's name for the script's language (structured: Python)
        ("text", pa.large_string()),
    ]
)

# GitHub issues rendered as StarCoder2's training text: one row per kept conversation (issues stage).
ISSUES = pa.schema(
    [
        ("repo_name", pa.string()),
        ("number", pa.int64()),
        ("users", pa.int64()),  # distinct authors left after bot removal
        ("events", pa.int64()),
        ("text", pa.large_string()),
    ]
)

# GitHub pull requests rendered as StarCoder2's training text: one row per kept PR (issues stage).
PULL_REQUESTS = pa.schema(
    [
        ("repo_name", pa.string()),
        ("number", pa.int64()),
        ("events", pa.int64()),  # events rendered (a skipped event or an undiffed head commit is not one)
        ("base_files", pa.int64()),  # base files shown after the YAML/JSON subsample
        ("text", pa.large_string()),
    ]
)

# The non-code sources cleaned by the clean_sources stage: the same rows less near-duplicates, malware and
# contaminated ones, `text` PII-redacted, and the spans replaced per row (as data/clean's files).
_PII_REDACTIONS = pa.field("pii_redactions", pa.int32())
CLEAN_NOTEBOOKS = NOTEBOOKS.append(_PII_REDACTIONS)
CLEAN_ISSUES = ISSUES.append(_PII_REDACTIONS)
CLEAN_PULL_REQUESTS = PULL_REQUESTS.append(_PII_REDACTIONS)

# The `language` of a training document from a source that has none (issues, pull requests): parentheses
# keep it apart from every go-enry name.
NO_LANGUAGE = "(none)"

# The training stream: repository documents of code and the other sources' documents (format stage), each
# ending in <|endoftext|>; a source's epochs repeat its train documents (conf/mixture/).
DOCS = pa.schema(
    [
        ("repo_name", pa.string()),
        ("split", pa.string()),  # train | val
        ("n_files", pa.int64()),  # files in a code document; 1 for a document of another source
        ("length_bytes", pa.int64()),
        ("text", pa.large_string()),
        ("source", pa.string()),  # the mixture source (conf/mixture/ `sources`) it comes from
        # The pass that wrote it: 0 for a document's first appearance, e for its copy in epoch e (train only).
        ("epoch", pa.int64()),
        # The language of a one-language source's document (NO_LANGUAGE when it has none); null for a code
        # document, whose files' languages are in data/clean.
        ("language", pa.string()),
    ]
)


class SchemaMismatch(ValueError):
    """A table on disk does not carry the columns its reader expects."""


def validate(path: Path, expected: pa.Schema) -> None:
    """Fail with one clear line when a shard lacks or mistypes a column of `expected`."""
    actual = pq.read_schema(path)
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            raise SchemaMismatch(
                f"{path}: column '{field.name}' is missing; rebuild it with `dvc repro`"
            )
        if not actual.field(index).type.equals(field.type):
            raise SchemaMismatch(
                f"{path}: column '{field.name}' is {actual.field(index).type}, expected {field.type}; "
                "rebuild it with `dvc repro`"
            )
