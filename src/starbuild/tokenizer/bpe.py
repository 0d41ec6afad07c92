"""StarCoder2-style byte-level BPE: single-digit splitting, GPT-2 regex, special tokens first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from starbuild.core.layout import TOKENIZER_FILE

# Every repository document written by the format stage ends with this token.
EOS_TOKEN = "<|endoftext|>"
BYTE_ALPHABET_SIZE = 256


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


def check_bpe_config(vocab_size: int, min_frequency: int, special_tokens: Sequence[str]) -> None:
    """Fail with one line naming the fix when the BPE settings cannot give the promised vocab."""
    if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
        raise ValueError("tokenizer.bpe.special_tokens must be distinct non-empty strings")
    if EOS_TOKEN not in special_tokens:
        raise ValueError(f"tokenizer.bpe.special_tokens must include {EOS_TOKEN} (documents end with it)")
    floor = BYTE_ALPHABET_SIZE + len(special_tokens)
    if vocab_size <= floor:
        raise ValueError(
            f"tokenizer.bpe.vocab_size={vocab_size} leaves no room for merges; raise it above {floor} "
            f"({BYTE_ALPHABET_SIZE} bytes + {len(special_tokens)} special tokens)"
        )
    if min_frequency < 1:
        raise ValueError(f"tokenizer.bpe.min_frequency={min_frequency} must be at least 1")


def without_special_tokens(texts: Iterable[str], special_tokens: Sequence[str]) -> Iterator[str]:
    """The pieces of each text between special tokens, so merges are never spent on their spelling."""
    splitter = re.compile("|".join(re.escape(token) for token in special_tokens))
    for text in texts:
        for piece in splitter.split(text):
            if piece:
                yield piece


def train_bpe(
    texts: Iterable[str], vocab_size: int, min_frequency: int, special_tokens: Sequence[str]
) -> Tokenizer:
    """Train a byte-level BPE on `texts` (streamed) with `special_tokens` at ids 0..n-1."""
    check_bpe_config(vocab_size, min_frequency, special_tokens)
    tokenizer = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(without_special_tokens(texts, special_tokens), trainer=trainer)
    check_special_ids(tokenizer, special_tokens)
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
