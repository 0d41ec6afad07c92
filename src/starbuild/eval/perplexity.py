"""Loss and bits per byte of a causal LM on held-out files, overall and per language.

Each file is scored on its own: its tokens follow one `<|endoftext|>` (an input only, never a
target), in non-overlapping windows of `seq_length` targets. The bytes counted are exactly the
UTF-8 bytes of the files' text, because every target token is one of the file's own tokens.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, pre_tokenizers
from tqdm import tqdm

from starbuild.core.schemas import UNKNOWN_LANGUAGE

T = TypeVar("T")


@dataclass
class PerplexityConfig:
    """The `eval.perplexity` config section."""

    # Targets per window (the model reads this many tokens; windows do not overlap).
    seq_length: int = 256
    # Stop after this many scored tokens (files in a fixed order, whole windows).
    max_tokens: int = 65536

    def __post_init__(self) -> None:
        if not 1 <= self.seq_length <= self.max_tokens:
            raise ValueError(f"seq_length must be within [1, max_tokens={self.max_tokens}], got {self.seq_length}")


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (index = id).

    In a byte-level BPE every character of a regular token's string is one byte; a special
    token stands for the text of its name (the file holds that text literally).
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


@dataclass(frozen=True)
class Window:
    """Inputs and targets of one scored window (targets are inputs shifted by one) and its file's language."""

    language: str
    ids: np.ndarray  # length targets + 1


def interleave_languages(files: Sequence[tuple[str | None, T]]) -> list[tuple[str | None, T]]:
    """The files (language, text or any handle) round-robin over languages (in name order), each language's in
    their given order, so a token budget that ends early still reaches every language."""
    by_language: dict[str, list[tuple[str | None, T]]] = defaultdict(list)
    for language, text in files:
        by_language[language or UNKNOWN_LANGUAGE].append((language, text))
    queues = [by_language[name] for name in sorted(by_language)]
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def tokens_at_least(n_bytes: int, longest_token_bytes: int) -> int:
    """Tokens a text of `n_bytes` encodes to at the fewest: no token stands for more bytes than the longest."""
    return -(-n_bytes // max(1, longest_token_bytes))


def file_windows(files: Iterable[tuple[str | None, str]], tokenizer: Tokenizer, eos_id: int,
                 config: PerplexityConfig) -> list[Window]:
    """Windows over each file's tokens, files in the given order, until max_tokens targets."""
    out: list[Window] = []
    budget = config.max_tokens
    for language, text in files:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        stream = np.asarray([eos_id, *ids], dtype=np.int64)
        for start in range(0, len(ids), config.seq_length):
            if budget <= 0:
                return out
            targets = min(config.seq_length, len(ids) - start, budget)
            out.append(Window(language or UNKNOWN_LANGUAGE, stream[start : start + targets + 1]))
            budget -= targets
    return out


@dataclass
class Totals:
    """Summed negative log-likelihood, targets and bytes."""

    nll: float = 0.0
    tokens: int = 0
    bytes: int = 0

    def metrics(self, prefix: str) -> dict[str, float | int]:
        """loss (nats per token) and bits_per_byte, rounded to 6 decimals for stable bytes."""
        return {f"{prefix}/loss": round(self.nll / self.tokens, 6),
                f"{prefix}/bits_per_byte": round(self.nll / math.log(2) / self.bytes, 6),
                f"{prefix}/tokens": self.tokens, f"{prefix}/bytes": self.bytes}


@torch.inference_mode()
def score_windows(model: torch.nn.Module, windows: Sequence[Window], byte_lengths: np.ndarray, batch_size: int,
                  pad_id: int) -> dict[str, Totals]:
    """Totals per language and under "all" (HF-style model: `model(input_ids=…).logits`)."""
    device = next(model.parameters()).device
    totals: dict[str, Totals] = defaultdict(Totals)
    # Longest first, so a batch pads little; right padding leaves the real positions' logits unchanged.
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i].ids))
    for start in tqdm(range(0, len(order), batch_size), desc="perplexity", unit="batch"):
        batch = [windows[i] for i in order[start : start + batch_size]]
        width = max(len(window.ids) for window in batch)
        padded = np.full((len(batch), width), pad_id, dtype=np.int64)
        for row, window in enumerate(batch):
            padded[row, : len(window.ids)] = window.ids
        tensor = torch.from_numpy(padded).to(device)
        logits = model(input_ids=tensor[:, :-1]).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), tensor[:, 1:], reduction="none").cpu().numpy()
        for row, window in enumerate(batch):
            targets = len(window.ids) - 1
            value = float(nll[row, :targets].sum())
            size = int(byte_lengths[window.ids[1:]].sum())
            for key in (window.language, "all"):
                totals[key].nll += value
                totals[key].tokens += targets
                totals[key].bytes += size
    return totals


def perplexity_metrics(totals: dict[str, Totals]) -> dict[str, float | int]:
    """`val/…` overall and `val/<language>/…` for each language, languages in name order."""
    metrics = totals["all"].metrics("val")
    for language in sorted(key for key in totals if key != "all"):
        metrics |= totals[language].metrics(f"val/{language}")
    return metrics
