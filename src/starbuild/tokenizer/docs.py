"""Stream the texts of the repository-document table (`data/docs/<split>/part-*.parquet`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc

from starbuild.core.shards import read_shard

# Why a document row is skipped, as counted in the metrics.
DROP_REASONS = ("empty_text", "null_text")


def shard_texts(shard: Path, dropped: Counter[str]) -> Iterator[tuple[str, int]]:
    """Each usable document text of a shard with its UTF-8 size, in row order.

    The caller validates the shard against schemas.DOCS (StageContext.input_shards).
    Null and empty texts carry nothing to learn or pack: they are skipped and counted in `dropped`.
    """
    texts = read_shard(shard, columns=["text"]).column("text")
    sizes = pc.binary_length(texts).to_pylist()
    for text, size in zip(texts.to_pylist(), sizes, strict=True):
        if text is None:
            dropped["null_text"] += 1
        elif not text:
            dropped["empty_text"] += 1
        else:
            yield text, size
