"""Validation loss and bits per byte of a causal LM over the concatenated val token stream."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, pre_tokenizers
from tqdm import tqdm

# Rows of `text` read from a shard at a time, so memory stays bounded by a batch, not a shard.
READ_BATCH_ROWS = 64


@dataclass(frozen=True)
class EvalConfig:
    """The `eval` config section."""

    batch_size: int
    # Tokens scored per window (the model reads this many; windows do not overlap).
    seq_length: int
    # Stop after this many evaluated tokens (whole windows).
    max_tokens: int
    # Where the model runs: cpu, or cuda when a GPU is there.
    device: str

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if not 1 <= self.seq_length <= self.max_tokens:
            raise ValueError(f"seq_length must be within [1, max_tokens={self.max_tokens}], got {self.seq_length}")


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (index = id).

    In a byte-level BPE every character of a regular token's string is one byte; a special
    token stands for the text of its name.
    """
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    added = tokenizer.get_added_tokens_decoder()
    lengths = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        if index in added:
            lengths[index] = len(added[index].content.encode("utf-8"))
        elif set(token) <= alphabet:
            lengths[index] = len(token)
        else:
            raise ValueError(f"token {token!r} is not byte-level; eval needs a byte-level BPE tokenizer")
    return lengths


def iter_val_texts(shards: Iterable[Path]) -> Iterator[str]:
    """The `text` of every val document, shard by shard, in stored order (shards already validated)."""
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=READ_BATCH_ROWS, columns=["text"]):
            yield from (text for text in batch.column(0).to_pylist() if text is not None)


def val_token_stream(texts: Iterable[str], tokenizer: Tokenizer, eos: str, limit: int) -> np.ndarray:
    """Token ids of the texts, each followed by `eos` unless it already ends with it; ≤ `limit` ids."""
    eos_id = tokenizer.token_to_id(eos)
    pieces: list[np.ndarray] = []
    total = 0
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if not text.endswith(eos):
            ids.append(eos_id)
        pieces.append(np.asarray(ids[: limit - total], dtype=np.int64))
        total += pieces[-1].size
        if total >= limit:
            break
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def windows(stream: np.ndarray, seq_length: int, max_tokens: int) -> np.ndarray:
    """Non-overlapping windows of `seq_length` targets, shape (n, seq_length + 1).

    Window i holds stream[i*L : i*L + L + 1]: inputs are its first L ids, targets its last L,
    so every target after the first token is scored exactly once. Only whole windows, at most
    max_tokens // L of them.
    """
    n = min(max_tokens // seq_length, max(0, stream.size - 1) // seq_length)
    starts = np.arange(n) * seq_length
    return stream[starts[:, None] + np.arange(seq_length + 1)[None, :]]


@dataclass(frozen=True)
class EvalTotals:
    """Sums over every scored target token."""

    nll_nats: float
    tokens: int
    bytes: int

    def metrics(self) -> dict[str, float | int]:
        """val_loss (nats per token) and bits_per_byte, rounded to 6 decimals for stable bytes."""
        return {
            "val_loss": round(self.nll_nats / self.tokens, 6),
            "bits_per_byte": round(self.nll_nats / math.log(2) / self.bytes, 6),
            "tokens": self.tokens,
            "bytes": self.bytes,
        }


@torch.inference_mode()
def score_windows(
    model: torch.nn.Module, batches: np.ndarray, byte_lengths: np.ndarray, batch_size: int, device: str
) -> EvalTotals:
    """Summed next-token NLL of a causal LM (HF-style: `model(input_ids=...).logits`) over windows."""
    nll = 0.0
    bytes_covered = 0
    for start in tqdm(range(0, len(batches), batch_size), desc="eval", unit="batch"):
        window = torch.from_numpy(batches[start : start + batch_size]).to(device)
        inputs, targets = window[:, :-1], window[:, 1:]
        logits = model(input_ids=inputs).logits.float()
        nll += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum"))
        bytes_covered += int(byte_lengths[batches[start : start + batch_size, 1:]].sum())
    return EvalTotals(nll_nats=nll, tokens=int(batches[:, 1:].size), bytes=bytes_covered)
