"""Token counts of the training stream's documents and of the code files, per source and language.

Counts use the trained tokenizer with HF tokenizers' batch encoding (`encode_batch_fast`, no special
tokens added: every document already ends in `<|endoftext|>`), a batch of rows at a time, so memory holds
one batch. Sums of integers: the same whatever the order or the tokenizer's threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from tokenizers import Tokenizer
from tqdm import tqdm

from starbuild.core import layout
from starbuild.core.schemas import UNKNOWN_LANGUAGE
from starbuild.format.mixture import LanguageCut, read_marking_caps

# Rows encoded per batch.
BATCH_ROWS = 256


@dataclass
class Tally:
    """Tokens of one language of one source: all of it, within the caps, and in the training stream."""

    before_caps: int = 0
    after_caps: int = 0
    after_epochs: int = 0

    def add(self, other: Tally) -> None:
        self.before_caps += other.before_caps
        self.after_caps += other.after_caps
        self.after_epochs += other.after_epochs

    def as_dict(self) -> dict[str, int]:
        return {"before_caps": self.before_caps, "after_caps": self.after_caps, "after_epochs": self.after_epochs}


@dataclass
class SplitTokens:
    """Documents and tokens of one source in one split of data/docs (copies included)."""

    docs: int = 0
    tokens: int = 0


def token_lengths(tokenizer: Tokenizer, texts: Sequence[str | None]) -> list[int]:
    """Tokens of each text (a null text has none)."""
    encodings = tokenizer.encode_batch_fast([text or "" for text in texts], add_special_tokens=False)
    return [len(encoding.ids) for encoding in encodings]


def _batches(shard: Path, columns: list[str]) -> Iterator[dict[str, list]]:
    for batch in pq.ParquetFile(shard).iter_batches(BATCH_ROWS, columns=columns):
        yield {name: batch.column(name).to_pylist() for name in columns}


class DocumentCounts:
    """Tokens of data/docs per source and split, and per language for the sources with one (not code)."""

    def __init__(self, code: str | None) -> None:
        self.code = code
        self.splits: dict[str, dict[str, SplitTokens]] = defaultdict(lambda: defaultdict(SplitTokens))
        self.languages: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))

    def add_shards(self, tokenizer: Tokenizer, split: str, shards: Iterable[Path]) -> None:
        """Count every document of a split's shards."""
        for shard in tqdm(list(shards), desc=f"mixture: {split} documents", unit="shard"):
            for rows in _batches(shard, ["source", "epoch", "language", "text"]):
                lengths = token_lengths(tokenizer, rows["text"])
                for source, epoch, language, tokens in zip(rows["source"], rows["epoch"], rows["language"], lengths,
                                                           strict=True):
                    counted = self.splits[source][split]
                    counted.docs += 1
                    counted.tokens += tokens
                    if source != self.code:
                        self._add_language(source, language, epoch, split, tokens)

    def _add_language(self, source: str, language: str | None, epoch: int, split: str, tokens: int) -> None:
        # A document's first copy is the source's content (no caps apply to it); train copies are the stream.
        tally = self.languages[source][language or UNKNOWN_LANGUAGE]
        if epoch == 0:
            tally.before_caps += tokens
            tally.after_caps += tokens
        if split == layout.TRAIN:
            tally.after_epochs += tokens


def code_copies(train_shards: Sequence[Path], code: str) -> dict[str, int]:
    """How many times each code repository's documents are in the train split (its epochs' copies)."""
    if not train_shards:
        return {}
    rows = duckdb.connect().execute(
        "SELECT repo_name, max(epoch) + 1 FROM read_parquet($paths) WHERE source = $code GROUP BY repo_name",
        {"paths": [str(shard) for shard in train_shards], "code": code}).fetchall()
    return {repo: int(count) for repo, count in rows}


def code_languages(tokenizer: Tokenizer, shards: Sequence[Path], cuts: Mapping[str, LanguageCut], seed: int,
                   copies: Mapping[str, int]) -> dict[str, Tally]:
    """Tokens of the code files' contents per language: all, within the caps, and times their train copies."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    for shard in tqdm(shards, desc="mixture: code files", unit="shard"):
        table = read_marking_caps(shard, ["repo_name", "language", "content"], cuts, seed)
        for start in range(0, table.num_rows, BATCH_ROWS):
            rows = {name: table.column(name).slice(start, BATCH_ROWS).to_pylist() for name in table.column_names}
            lengths = token_lengths(tokenizer, rows["content"])
            for repo, language, within, tokens in zip(rows["repo_name"], rows["language"], rows["within_caps"],
                                                      lengths, strict=True):
                tally = tallies[language or UNKNOWN_LANGUAGE]
                tally.before_caps += tokens
                if within:
                    tally.after_caps += tokens
                    tally.after_epochs += tokens * copies.get(repo, 0)
    return tallies
