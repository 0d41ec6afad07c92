"""Deterministic, atomic Parquet shard tables: a table is a directory of `part-NNNNN.parquet`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_GLOB = "part-*.parquet"


def shard_name(index: int) -> str:
    """File name of shard `index` inside a table directory."""
    return f"part-{index:05d}.parquet"


def list_shards(table_dir: Path) -> list[Path]:
    """The shards of a table in index order."""
    return sorted(Path(table_dir).glob(SHARD_GLOB))


# Columns whose values are almost all distinct: a dictionary only costs time there.
_DISTINCT = frozenset({"content", "text"})


def write_shard(table: pa.Table, path: Path) -> None:
    """Write one shard with settings that make the bytes depend on the rows alone."""
    # No statistics timestamps exist in Parquet, but `created_by` names the writer version;
    # the pinned pyarrow keeps it fixed. Dictionary/compression settings are fixed here. zstd level 1
    # writes code a quarter faster than level 3 for 9% more bytes.
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=1,
        use_dictionary=[name for name in table.column_names if name not in _DISTINCT],
        write_statistics=True,
        row_group_size=4096,
    )


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one shard."""
    # ParquetFile, not read_table: the dataset layer read_table goes through costs a millisecond a shard.
    with pq.ParquetFile(path) as shard:
        return shard.read(columns=columns)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final` in one rename.

    A killed stage leaves only a `.tmp-*` sibling, never a half-written `final` for DVC to commit.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    # mkdtemp makes a private 0700 directory; outputs get the usual umask-based mode.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path next to `final`; rename it over `final` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{final.name}-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
