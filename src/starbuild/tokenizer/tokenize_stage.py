"""The `tokenize` stage: encode the documents shard by shard (executor tasks), then pack them into rows.

Each docs shard is one task: its documents encoded, each closed by the end-of-text token, into a file
of ids in a work directory. The packing then reads those files in shard order, so the rows do not
depend on the executor, the number of workers or where a task ran; a task an interrupted run
finished is taken from the work cache (keyed by the shard, the tokenizer and the code).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext, StageError
from starbuild.executors import Executor, make_executor
from starbuild.special_tokens import END_OF_TEXT
from starbuild.tokenizer import bpe, pack
from starbuild.tokenizer.docs import DROP_REASONS, shard_texts
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

# Ids on disk between encoding and packing: wide enough for any vocabulary.
IDS_DTYPE = np.dtype("<u4")


@dataclass
class SplitStats:
    """What tokenizing one split read, produced and dropped."""

    docs: int = 0
    bytes: int = 0
    eos_appended: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, shard: dict[str, Any]) -> None:
        """Add one shard's counts (as EncodeShard returns them)."""
        self.docs += shard["docs"]
        self.bytes += shard["bytes"]
        self.eos_appended += shard["eos_appended"]
        self.dropped.update(shard["dropped"])

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


@functools.lru_cache(maxsize=2)
def _tokenizer(path: Path) -> Tokenizer:
    # One load per worker process, however many shards it encodes.
    return bpe.load_tokenizer(path.parent)


@dataclass(frozen=True)
class EncodeShard:
    """Picklable task: encode the documents of docs shard `src` into the ids file `dst`; return the counts."""

    tokenizer_file: Path
    chunk_bytes: int

    def __call__(self, paths: tuple[Path, Path]) -> dict[str, Any]:
        src, dst = paths
        tokenizer = _tokenizer(self.tokenizer_file)
        eos_id = tokenizer.token_to_id(END_OF_TEXT)
        dropped: Counter[str] = Counter()
        counts = {"docs": 0, "bytes": 0, "eos_appended": 0}
        with Path(dst).open("wb") as out:
            for texts, size in _chunks(shard_texts(src, dropped), self.chunk_bytes):
                counts["docs"] += len(texts)
                counts["bytes"] += size
                for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False):
                    ids = encoding.ids
                    # Documents already end with <|endoftext|>; one that does not still gets a boundary.
                    if not ids or ids[-1] != eos_id:
                        ids = [*ids, eos_id]
                        counts["eos_appended"] += 1
                    out.write(np.asarray(ids, dtype=IDS_DTYPE).tobytes())
        return {**counts, "dropped": dict(dropped)}


def encode_split(executor: Executor, cache: WorkCache, encoder: EncodeShard, shards: list[Path], work: Path,
                 desc: str, tokenizer_digest: bytes) -> tuple[list[Path], SplitStats]:
    """The ids file of every shard of a split, in shard order, and the split's counts."""
    files = [work / f"{index:05d}.ids" for index in range(len(shards))]
    keys = cache.keys(shards, [tokenizer_digest] * len(shards))
    results = cache.map(executor, encoder, list(zip(shards, files, strict=True)), keys, outputs=files, desc=desc,
                        labels=[str(shard) for shard in shards])
    stats = SplitStats()
    for counts in results:
        stats.add(counts)
    return files, stats


def run_tokenize(ctx: StageContext) -> None:
    """Encode the train and val documents and pack them into data/tokens/<split>/part-*.bin + index.json."""
    config = ctx.section("tokenizer.pack", pack.PackConfig)
    seq_length = config.seq_length
    with ctx.reading(layout.TOKENIZER / layout.TOKENIZER_FILE) as path:
        tokenizer = bpe.load_tokenizer(path.parent)
        tokenizer_file = path
        tokenizer_digest = hashlib.sha256(path.read_bytes()).digest()
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise StageError(f"{layout.TOKENIZER} lacks {END_OF_TEXT}; run `dvc repro tokenizer`")
    vocab_size = tokenizer.get_vocab_size()
    dtype = pack.token_dtype(vocab_size)
    executor = make_executor(ctx.cfg.executor)
    cache = WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg)
    encoder = EncodeShard(tokenizer_file, config.encode_chunk_bytes)

    index: dict[str, Any] = {"dtype": dtype.name, "seq_length": seq_length, "vocab_size": vocab_size,
                             "shard_sequences": config.shard_sequences, "splits": {}}
    metrics: dict[str, Any] = {"dtype": dtype.name, "seq_length": seq_length, "vocab_size": vocab_size}
    out = ctx.output(layout.TOKENS)
    with atomic_output(out) as tmp, tempfile.TemporaryDirectory(prefix="starbuild-tokenize-") as work:
        for split in layout.SPLITS:
            shards = ctx.input_shards(layout.DOCS / split, schemas.DOCS)
            log.info("tokenizing %s: %d shards", split, len(shards))
            (Path(work) / split).mkdir()
            files, stats = encode_split(executor, cache, encoder, shards, Path(work) / split, f"tokenize: {split}",
                                        tokenizer_digest)
            with pack.ShardWriter(tmp, split, seq_length, config.shard_sequences, dtype) as writer:
                packer = pack.Packer(writer, seq_length, dtype)
                for file in files:
                    packer.add(np.fromfile(file, dtype=IDS_DTYPE))
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
    cache.finish()
    log.info("wrote %s", out)
    ctx.write_metrics(metrics)
