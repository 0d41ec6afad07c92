"""The `tokenize` stage: encode the documents and pack them into fixed-length token rows."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext, StageError
from starbuild.special_tokens import END_OF_TEXT
from starbuild.tokenizer import bpe, pack
from starbuild.tokenizer.docs import DROP_REASONS, shard_texts

log = logging.getLogger(__name__)


@dataclass
class SplitStats:
    """What tokenizing one split read, produced and dropped."""

    docs: int = 0
    bytes: int = 0
    eos_appended: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def metrics(self, packer: pack.Packer) -> dict[str, Any]:
        """This split's metrics: docs, tokens, sequences, dropped tail and bytes per token."""
        return {
            "docs": self.docs,
            "docs_dropped": {reason: self.dropped[reason] for reason in DROP_REASONS},
            "eos_appended": self.eos_appended,
            "bytes": self.bytes,
            "tokens": packer.tokens,
            "sequences": packer.sequences,
            "packed_tokens": packer.packed_tokens,
            "dropped_tail_tokens": packer.dropped_tail,
            "bytes_per_token": round(self.bytes / packer.tokens, 4) if packer.tokens else 0.0,
        }


def _chunks(docs: Iterator[tuple[str, int]], chunk_bytes: int) -> Iterator[tuple[list[str], int]]:
    """Group documents into batches of about `chunk_bytes` (with their size) to bound encodings."""
    batch: list[str] = []
    size = 0
    for text, length in docs:
        batch.append(text)
        size += length
        if size >= chunk_bytes:
            yield batch, size
            batch, size = [], 0
    if batch:
        yield batch, size


def _encode_chunk(tokenizer: Tokenizer, texts: list[str], eos_id: int, stats: SplitStats) -> np.ndarray:
    """The ids of `texts` in order, each document closed by the end-of-text token."""
    parts = []
    for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
        ids = encoding.ids
        # Documents already end with <|endoftext|>; one that does not still gets a boundary.
        if not ids or ids[-1] != eos_id:
            ids = [*ids, eos_id]
            stats.eos_appended += 1
        parts.append(np.asarray(ids, dtype=np.int64))
    return np.concatenate(parts)


def tokenize_split(
    tokenizer: Tokenizer, shards: list[Path], packer: pack.Packer, chunk_bytes: int, desc: str
) -> SplitStats:
    """Encode every document of `shards` in shard then row order and feed the ids to `packer`."""
    stats = SplitStats()
    eos_id = tokenizer.token_to_id(END_OF_TEXT)
    for shard in tqdm(shards, desc=desc, unit="shard"):
        docs = shard_texts(shard, stats.dropped)
        for texts, size in _chunks(docs, chunk_bytes):
            stats.docs += len(texts)
            stats.bytes += size
            packer.add(_encode_chunk(tokenizer, texts, eos_id, stats))
    return stats


def run_tokenize(ctx: StageContext) -> None:
    """Encode the train and val documents and pack them into data/tokens/<split>/part-*.bin + index.json."""
    config = ctx.section("tokenizer.pack", pack.PackConfig)
    seq_length, chunk_bytes = config.seq_length, config.encode_chunk_bytes
    with ctx.reading(layout.TOKENIZER / layout.TOKENIZER_FILE) as path:
        tokenizer = bpe.load_tokenizer(path.parent)
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise StageError(f"{layout.TOKENIZER} lacks {END_OF_TEXT}; run `dvc repro tokenizer`")
    vocab_size = tokenizer.get_vocab_size()
    dtype = pack.token_dtype(vocab_size)

    index: dict[str, Any] = {"dtype": dtype.name, "seq_length": seq_length, "vocab_size": vocab_size,
                             "shard_sequences": config.shard_sequences, "splits": {}}
    metrics: dict[str, Any] = {"dtype": dtype.name, "seq_length": seq_length, "vocab_size": vocab_size}
    out = ctx.output(layout.TOKENS)
    with atomic_output(out) as tmp:
        for split in layout.SPLITS:
            shards = ctx.input_shards(layout.DOCS / split, schemas.DOCS)
            log.info("tokenizing %s: %d shards", split, len(shards))
            with pack.ShardWriter(tmp, split, seq_length, config.shard_sequences, dtype) as writer:
                packer = pack.Packer(writer, seq_length, dtype)
                stats = tokenize_split(tokenizer, shards, packer, chunk_bytes, f"tokenize: {split}")
            if packer.sequences == 0:
                raise StageError(
                    f"the {split} split has {packer.tokens} tokens ({stats.docs} docs), fewer tokens "
                    f"than seq_length={seq_length}: lower tokenizer.pack.seq_length or add origins"
                )
            index["splits"][split] = {"sequences": packer.sequences, "tokens": packer.packed_tokens,
                                      "dropped_tail_tokens": packer.dropped_tail, "shards": writer.shards}
            metrics[split] = stats.metrics(packer) | {"shards": len(writer.shards)}
            log.info("%s: %d docs -> %d tokens -> %d sequences of %d in %d shards (%d tail tokens dropped)",
                     split, stats.docs, packer.tokens, packer.sequences, seq_length, len(writer.shards),
                     packer.dropped_tail)
        pack.write_index(tmp, index)
    log.info("wrote %s", out)
    ctx.write_metrics(metrics)
