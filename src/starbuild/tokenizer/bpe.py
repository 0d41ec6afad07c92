"""StarCoder2-style byte-level BPE: single-digit splitting, GPT-2 regex, special tokens first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from starbuild.core.layout import TOKENIZER_FILE
from starbuild.special_tokens import SPECIAL_TOKENS

BYTE_ALPHABET_SIZE = 256


@dataclass(frozen=True)
class BpeConfig:
    """The `tokenizer.bpe` config section: how large a vocabulary to learn, from how frequent pairs."""

    vocab_size: int
    min_frequency: int

    def __post_init__(self) -> None:
        floor = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
        if self.vocab_size <= floor:
            raise ValueError(
                f"vocab_size={self.vocab_size} leaves no room for merges; raise it above {floor} "
                f"({BYTE_ALPHABET_SIZE} bytes + {len(SPECIAL_TOKENS)} special tokens)"
            )
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency={self.min_frequency} must be at least 1")


def build_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with StarCoder2's pre-tokenization, decoder and post-processor."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def without_special_tokens(texts: Iterable[str], special_tokens: Sequence[str]) -> Iterator[str]:
    """The pieces of each text between special tokens, so merges are never spent on their spelling."""
    splitter = re.compile("|".join(re.escape(token) for token in special_tokens))
    for text in texts:
        for piece in splitter.split(text):
            if piece:
                yield piece


def train_bpe(texts: Iterable[str], config: BpeConfig) -> Tokenizer:
    """Train a byte-level BPE on `texts` (streamed) with StarCoder2's 38 special tokens at the lowest ids."""
    tokenizer = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(without_special_tokens(texts, SPECIAL_TOKENS), trainer=trainer)
    check_special_ids(tokenizer, SPECIAL_TOKENS)
    return tokenizer


def check_special_ids(tokenizer: Tokenizer, special_tokens: Sequence[str]) -> None:
    """Assert that special token i has id i, as StarCoder2's tokenizer and the model expect."""
    for expected, token in enumerate(special_tokens):
        actual = tokenizer.token_to_id(token)
        if actual != expected:
            raise AssertionError(f"special token {token!r} has id {actual}, expected {expected}")


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """The serialized tokenizer (vocab ordered by id, so the text depends only on the training)."""
    return tokenizer.to_str(pretty=True) + "\n"


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load the tokenizer that the tokenizer stage wrote into `directory`."""
    return Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE))
