"""Tokenize throughput: the tokenize stage's encode-and-pack loop against `tokenizers`' own encode_batch.

Both run on the same documents with the same tokenizer: data/docs/train and
models/tokenizer from `make repro` (the embedded corpus), repeated until there are at least 40 MB.

* stage: `encode_split` over the default executor (each shard a task: encode_batch_fast in chunks of
  `tokenizer.pack.encode_chunk_bytes`, an end-of-text check per document, ids to a file), then the
  packing of those files into fixed-length rows written to shard files;
* anchor: `Tokenizer.encode_batch` over the same chunks, ids collected and nothing written.

Both must produce the same number of tokens (checked). Prints MB/s of both and the ratio (target >= 0.8).
Run: `.venv/bin/python bench/bench_tokenize.py`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from starbuild.core import layout
from starbuild.core.config import compose
from starbuild.core.shards import list_shards, read_shard, write_shard
from starbuild.executors import make_executor
from starbuild.tokenizer import bpe, pack
from starbuild.tokenizer.tokenize_stage import IDS_DTYPE, EncodeShard, encode_split
from starbuild.work_cache import WorkCache

ROOT = Path(__file__).resolve().parents[1]
TARGET_BYTES = 40_000_000


def corpus_shards(work: Path) -> tuple[list[Path], list[str]]:
    """data/docs/train's shards copied until TARGET_BYTES, and their texts in order."""
    sources = list_shards(ROOT / layout.DOCS / "train")
    if not sources or not (ROOT / layout.TOKENIZER).is_dir():
        sys.exit("run `make repro` first: the bench reads data/docs/train and models/tokenizer")
    shards, texts, size = [], [], 0
    while size < TARGET_BYTES:
        for source in sources:
            table = read_shard(source)
            path = work / f"part-{len(shards):05d}.parquet"
            write_shard(table, path)
            shards.append(path)
            column = [text for text in table.column("text").to_pylist() if text]
            texts += column
            size += sum(len(text.encode("utf-8")) for text in column)
    return shards, texts


def main() -> None:
    cfg = compose([], conf_dir=ROOT / "conf")
    chunk_bytes = int(cfg.tokenizer.pack.encode_chunk_bytes)
    tokenizer = bpe.load_tokenizer(ROOT / layout.TOKENIZER)
    with tempfile.TemporaryDirectory() as tmp:
        shards, texts = corpus_shards(Path(tmp))
        size = sum(len(text.encode("utf-8")) for text in texts)
        print(f"corpus: {len(texts)} documents, {size / 1e6:.1f} MB, tokenizer of {tokenizer.get_vocab_size()} ids")

        start = time.perf_counter()
        config = pack.PackConfig(**cfg.tokenizer.pack)
        dtype = pack.token_dtype(tokenizer.get_vocab_size())
        out = Path(tmp) / "tokens"
        encoder = EncodeShard(ROOT / layout.TOKENIZER / layout.TOKENIZER_FILE, chunk_bytes)
        (Path(tmp) / "ids").mkdir()
        files, _ = encode_split(make_executor(cfg.executor), WorkCache(None), encoder, shards, Path(tmp) / "ids",
                                "tokenize", b"")
        with pack.ShardWriter(out, "train", config.seq_length, config.shard_sequences, dtype) as writer:
            packer = pack.Packer(writer, config.seq_length, dtype)
            for file in files:
                packer.add(np.fromfile(file, dtype=IDS_DTYPE))
        stage_s = time.perf_counter() - start

        start = time.perf_counter()
        anchor_tokens, batch, batch_bytes = 0, [], 0
        for text in texts:
            batch.append(text)
            batch_bytes += len(text)
            if batch_bytes >= chunk_bytes:
                anchor_tokens += sum(len(e.ids) for e in tokenizer.encode_batch(batch, add_special_tokens=False))
                batch, batch_bytes = [], 0
        if batch:
            anchor_tokens += sum(len(e.ids) for e in tokenizer.encode_batch(batch, add_special_tokens=False))
        anchor_s = time.perf_counter() - start
    if packer.tokens != anchor_tokens:
        sys.exit(f"token counts differ: stage {packer.tokens}, anchor {anchor_tokens}")
    print(f"stage  (encode + pack) {stage_s:6.2f} s  {size / 1e6 / stage_s:6.1f} MB/s")
    print(f"anchor (encode_batch)  {anchor_s:6.2f} s  {size / 1e6 / anchor_s:6.1f} MB/s")
    print(f"throughput ratio stage/anchor: {anchor_s / stage_s:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
