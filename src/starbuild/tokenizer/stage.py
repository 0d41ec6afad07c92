"""The `tokenizer` stage: train the byte-level BPE on the train documents."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext, StageError
from starbuild.tokenizer import bpe
from starbuild.tokenizer.docs import shard_texts

log = logging.getLogger(__name__)

def _train_texts(shards: list[Path], dropped: Counter[str], seen: Counter[str]) -> Iterator[str]:
    """The train documents, shard by shard, counting what was used and skipped."""
    for shard in tqdm(shards, desc="tokenizer: train docs", unit="shard"):
        for text, size in shard_texts(shard, dropped):
            seen["docs"] += 1
            seen["bytes"] += size
            yield text


def run_tokenizer(ctx: StageContext) -> None:
    """Train the byte-level BPE on the train documents and write models/tokenizer/tokenizer.json."""
    config = ctx.section("tokenizer.bpe", bpe.BpeConfig)
    vocab_size = config.vocab_size
    shards = ctx.input_shards(layout.DOCS / layout.TRAIN, schemas.DOCS)
    log.info("training BPE (vocab %d, min_frequency %d) on %d train shards", vocab_size,
             config.min_frequency, len(shards))
    dropped: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    tokenizer = bpe.train_bpe(_train_texts(shards, dropped, seen), config)
    if not seen["docs"]:
        raise StageError(f"{layout.DOCS / layout.TRAIN} holds no non-empty document; add origins")
    actual = tokenizer.get_vocab_size()
    log.info("trained on %d docs (%d bytes), skipped %s; vocab size %d (asked %d)", seen["docs"],
             seen["bytes"], dict(sorted(dropped.items())) or "none", actual, vocab_size)
    if actual < vocab_size:
        log.warning("only %d of %d vocab entries were learned: the train split is too small or "
                    "tokenizer.bpe.min_frequency too high", actual, vocab_size)

    out = ctx.output(layout.TOKENIZER)
    with atomic_output(out) as tmp:
        (tmp / layout.TOKENIZER_FILE).write_bytes(bpe.tokenizer_json(tokenizer).encode("utf-8"))
    log.info("wrote %s", out / layout.TOKENIZER_FILE)
