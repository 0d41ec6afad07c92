"""The shared core: schema validation names what is wrong; atomic outputs leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from starbuild.core import schemas
from starbuild.core.schemas import SchemaMismatch, validate
from starbuild.core.shards import atomic_file, atomic_output, write_shard

CLUSTER_ROW = {"cluster_id": "blob:" + "b" * 40, "reason": "exact_blob", "blob_id": "b" * 40, "repo_name": "org/repo",
               "path": "a.py", "kept": True, "cluster_size": 2}
DOC_ROW = {"repo_name": "org/repo", "split": "train", "n_files": 1, "length_bytes": 5, "text": "hello"}


def shard_with(tmp_path: Path, schema: pa.Schema, row: dict, column: str, dtype: pa.DataType | None) -> Path:
    """A one-row shard of `schema` whose `column` has type `dtype` instead (or is absent when None)."""
    index = schema.get_field_index(column)
    actual = schema.remove(index) if dtype is None else schema.set(index, pa.field(column, dtype))
    path = tmp_path / "part-00000.parquet"
    write_shard(pa.Table.from_pylist([{k: v for k, v in row.items() if k in actual.names}], schema=actual), path)
    return path


def test_a_valid_shard_passes(tmp_path: Path) -> None:
    validate(shard_with(tmp_path, schemas.DOCS, DOC_ROW, "text", pa.large_string()), schemas.DOCS)


@pytest.mark.parametrize(
    ("schema", "row", "column", "wrong", "expected"),
    [
        (schemas.DEDUP_CLUSTERS, CLUSTER_ROW, "cluster_size", pa.int32(), "int64"),
        (schemas.DOCS, DOC_ROW, "text", pa.string(), "large_string"),
        (schemas.DOCS, DOC_ROW, "n_files", pa.float64(), "int64"),
    ],
)
def test_a_mistyped_column_is_named_with_both_types(tmp_path: Path, schema: pa.Schema, row: dict, column: str,
                                                    wrong: pa.DataType, expected: str) -> None:
    path = shard_with(tmp_path, schema, row, column, wrong)
    with pytest.raises(SchemaMismatch) as info:
        validate(path, schema)
    message = str(info.value)
    assert f"column '{column}' is {wrong}, expected {expected}" in message
    assert str(path) in message and "\n" not in message


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = shard_with(tmp_path, schemas.DOCS, DOC_ROW, "split", None)
    with pytest.raises(SchemaMismatch, match="column 'split' is missing"):
        validate(path, schemas.DOCS)


# --- atomic outputs -------------------------------------------------------------------------------


class Midway(Exception):
    """Raised inside an atomic block, after part of the output was written."""


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (or `root` itself when it is a file) by relative path, with its bytes."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_old_table(final: Path) -> dict[str, bytes]:
    (final / "nested").mkdir(parents=True)
    (final / "part-00000.parquet").write_bytes(b"old shard\x00\x01")
    (final / "nested" / "meta.json").write_text('{"old": true}\n')
    return tree_bytes(final)


@pytest.mark.parametrize("error", [Midway, KeyboardInterrupt])
def test_atomic_output_failing_midway_leaves_no_output(tmp_path: Path, error: type[BaseException]) -> None:
    final = tmp_path / "data" / "table"
    with pytest.raises(error), atomic_output(final) as tmp:
        write_shard(pa.table({"x": [1, 2]}), tmp / "part-00000.parquet")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "half.bin").write_bytes(b"half")
        raise error("midway")
    assert not final.exists() and not final.is_symlink()
    assert list(final.parent.iterdir()) == []  # no .tmp-* left behind


@pytest.mark.parametrize("error", [Midway, KeyboardInterrupt])
def test_atomic_output_failing_midway_keeps_the_older_output(tmp_path: Path, error: type[BaseException]) -> None:
    final = tmp_path / "data" / "table"
    before = make_old_table(final)
    with pytest.raises(error), atomic_output(final) as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"new, half written")
        raise error("midway")
    assert tree_bytes(final) == before
    assert list(final.parent.iterdir()) == [final]


def test_atomic_output_success_replaces_the_older_output(tmp_path: Path) -> None:
    final = tmp_path / "data" / "table"
    make_old_table(final)
    with atomic_output(final) as tmp:
        (tmp / "part-00000.parquet").write_bytes(b"new")
    assert tree_bytes(final) == {"part-00000.parquet": b"new"}
    assert list(final.parent.iterdir()) == [final]


@pytest.mark.parametrize("error", [Midway, KeyboardInterrupt])
def test_atomic_file_failing_midway_leaves_no_file(tmp_path: Path, error: type[BaseException]) -> None:
    final = tmp_path / "metrics" / "stage.json"
    with pytest.raises(error), atomic_file(final) as tmp:
        tmp.write_text('{"half": ')
        raise error("midway")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


@pytest.mark.parametrize("error", [Midway, KeyboardInterrupt])
def test_atomic_file_failing_midway_keeps_the_older_file(tmp_path: Path, error: type[BaseException]) -> None:
    final = tmp_path / "metrics" / "stage.json"
    final.parent.mkdir()
    final.write_bytes(b'{"old": 1}\n')
    with pytest.raises(error), atomic_file(final) as tmp:
        tmp.write_text('{"new": ')
        raise error("midway")
    assert final.read_bytes() == b'{"old": 1}\n'
    assert list(final.parent.iterdir()) == [final]


def test_atomic_file_success_replaces_the_older_file(tmp_path: Path) -> None:
    final = tmp_path / "metrics" / "stage.json"
    final.parent.mkdir()
    final.write_bytes(b"old")
    with atomic_file(final) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new"
    assert list(final.parent.iterdir()) == [final]
