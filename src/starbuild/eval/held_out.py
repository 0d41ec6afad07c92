"""The validation repositories' files, indexed without their texts, and the texts of just those a benchmark uses.

Perplexity and the FIM lines both take files in a fixed order (a hash of each file's name, which mixes
repositories and languages). Holding every file's text to order them would grow with the corpus, so one
streaming pass keeps only what choosing needs (name, language, place, size, whether it has a line to
infill), and the texts of the chosen files are read afterwards, a shard at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext
from starbuild.eval.fim_eval import has_line_task

# Rows of data/clean read at a time (only the val repositories' files are kept).
READ_BATCH_ROWS = 256


@dataclass(frozen=True)
class HeldOutFile:
    """One non-empty file of a validation repository, without its text."""

    name: str  # repo_name/path
    language: str | None
    shard: Path
    row: int  # its row in `shard`
    n_bytes: int  # UTF-8 bytes of its text
    has_fim_line: bool  # a non-blank line to infill


def val_repositories(ctx: StageContext) -> set[str]:
    """The repositories held out for validation by the format stage."""
    names: set[str] = set()
    for shard in ctx.input_shards(layout.DOCS / layout.VAL, schemas.DOCS):
        with ctx.reading(shard.relative_to(ctx.root)):
            names.update(pq.read_table(shard, columns=["repo_name"]).column(0).to_pylist())
    return names


def index_files(ctx: StageContext, repositories: set[str]) -> list[HeldOutFile]:
    """Every non-empty cleaned file of `repositories`, ordered by a hash of its name; texts are not kept."""
    files = []
    wanted = pa.array(sorted(repositories), pa.string())
    for shard in ctx.input_shards(layout.CLEAN, schemas.CLEAN):
        with ctx.reading(shard.relative_to(ctx.root)):
            offset = 0
            for batch in pq.ParquetFile(shard).iter_batches(READ_BATCH_ROWS,
                                                              columns=["repo_name", "path", "language", "content"]):
                mask = pc.is_in(batch.column("repo_name"), value_set=wanted).to_numpy(zero_copy_only=False)
                rows = np.flatnonzero(mask)
                kept = batch.take(pa.array(rows, pa.int64()))
                for row, repo, path, language, text in zip(rows, *(kept.column(i).to_pylist() for i in range(4)),
                                                           strict=True):
                    if text:
                        files.append(HeldOutFile(f"{repo}/{path}", language, shard, offset + int(row),
                                                 len(text.encode("utf-8")), has_line_task(text)))
                offset += batch.num_rows
    return sorted(files, key=lambda f: hashlib.sha256(f.name.encode()).digest())


def read_texts(files: Sequence[HeldOutFile]) -> list[str]:
    """The texts of `files`, in their order, each shard's read once."""
    texts: dict[tuple[Path, int], str] = {}
    by_shard: dict[Path, list[int]] = {}
    for f in files:
        by_shard.setdefault(f.shard, []).append(f.row)
    for shard, rows in by_shard.items():
        column = pq.read_table(shard, columns=["content"]).column("content")
        texts.update(zip(((shard, row) for row in rows), column.take(pa.array(rows, pa.int64())).to_pylist(),
                         strict=True))
    return [texts[(f.shard, f.row)] for f in files]
