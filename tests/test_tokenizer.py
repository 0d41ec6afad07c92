"""The tokenizer stage: StarCoder2 special ids, byte-identical output, lossless round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from starbuild.core import layout, schemas
from starbuild.core.stage import StageError
from starbuild.special_tokens import SPECIAL_TOKENS
from starbuild.tokenizer import bpe
from starbuild.tokenizer.stage import run_tokenizer
from tests.factories import doc_row, write_table

# StarCoder2's confirmed ids 0-8 (its tokenizer_config.json).
STARCODER2_IDS = [
    "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
    "<repo_name>", "<file_sep>", "<issue_start>", "<issue_comment>",
]
PII_PLACEHOLDERS = ["<NAME>", "<EMAIL>", "<KEY>", "<PASSWORD>"]
UNICODE_CODE = (
    "def área(r: float) -> float:\n"
    "    \"\"\"π r² — 面积 🚀\"\"\"\n"
    "    return 3.14159 * r ** 2  # 2024-01-31\n\n"
    "\tx = [0, 12, 345, 6789]\n  trailing  \n"
)


WORDS = [
    "alpha", "beta", "gamma", "delta", "parse", "render", "fetch", "store", "index", "merge", "split",
    "token", "batch", "queue", "worker", "stream", "buffer", "reader", "writer", "cache", "lookup",
    "visit", "filter", "mapper", "reduce", "sorter",
]


def python_file(index: int) -> str:
    """A small, varied Python file (deterministic in `index`)."""
    first, second = WORDS[index % len(WORDS)], WORDS[(index * 7 + 3) % len(WORDS)]
    name = f"{first}_{second}"
    return (
        f"import os\nfrom typing import Any\n\n\n"
        f"def {name}(value: Any, count: int = {index}) -> list[int]:\n"
        f"    \"\"\"Return the first {index % 13} squares; naïve café ünïcode {index}.\"\"\"\n"
        f"    {second}_result = []  # {first} then {second}\n"
        f"    for i in range(count):\n"
        f"        {second}_result.append(i * i + {index * 31 % 1000})\n"
        f"    return {second}_result\n\n\n"
        f"class {first.title()}{second.title()}:\n"
        f"    path = os.path.join('data', 'file_{index}.txt')\n"
    )


def repo_doc(repo: str, files: int, start: int) -> str:
    """A repository document laid out as the format stage writes it."""
    body = "".join(f"<file_sep>pkg/mod_{i}.py\n{python_file(i)}" for i in range(start, start + files))
    return f"<repo_name>{repo}{body}<|endoftext|>"


def write_docs(root: Path, split: str, shards: list[list[str | None]]) -> Path:
    """Write `shards` (lists of document texts) as data/docs/<split>/part-*.parquet under `root`."""
    rows = [[doc_row(f"pypi/r{index}_{i}", split, text) for i, text in enumerate(texts)]
            for index, texts in enumerate(shards)]
    return write_table(root / layout.DOCS / split, rows, schemas.DOCS)


def write_corpus(root: Path) -> None:
    """A two-shard train split and a one-shard val split of repository documents."""
    write_docs(root, "train", [
        [repo_doc(f"pypi/a{i}", 6, i * 6) for i in range(6)],
        [repo_doc(f"pypi/b{i}", 6, 40 + i * 6) for i in range(6)] + [None, ""],
    ])
    write_docs(root, "val", [[repo_doc("pypi/v0", 5, 200), repo_doc("pypi/v1", 3, 300)]])


@pytest.fixture
def trained(make_context, tmp_path: Path) -> Path:
    """Run the tokenizer stage on a small corpus; return the tokenizer.json path."""
    write_corpus(tmp_path)
    run_tokenizer(make_context("tokenizer"))
    return tmp_path / layout.TOKENIZER / bpe.TOKENIZER_FILE


def test_special_tokens_take_the_lowest_ids_in_table_5_order(trained: Path, smoke_cfg) -> None:
    assert list(SPECIAL_TOKENS[:9]) == STARCODER2_IDS
    assert list(SPECIAL_TOKENS[-4:]) == PII_PLACEHOLDERS
    assert len(SPECIAL_TOKENS) == len(set(SPECIAL_TOKENS)) == 38
    tokenizer = bpe.load_tokenizer(trained.parent)
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(38))
    assert tokenizer.get_vocab_size() == smoke_cfg.tokenizer.bpe.vocab_size
    assert not list(trained.parent.parent.glob(".tmp-*"))


def test_special_tokens_in_text_are_single_ids(trained: Path) -> None:
    tokenizer = bpe.load_tokenizer(trained.parent)
    ids = tokenizer.encode("<repo_name>pypi/x<file_sep>a.py\nprint(1)\n<|endoftext|>").ids
    assert ids[0] == 5 and ids[-1] == 0
    assert ids.count(6) == 1
    # What PII redaction wrote is one token each.
    ids = tokenizer.encode("user = '<NAME>' # <EMAIL>\nkey='<KEY>'; pw=\"<PASSWORD>\"").ids
    assert [token for token in ids if token < len(SPECIAL_TOKENS)] == [34, 35, 36, 37]
    # No merge ever spells a special token out of pieces of the training text.
    assert not any("file_sep" in token for token in tokenizer.get_vocab() if token not in SPECIAL_TOKENS)


def test_digits_are_single_tokens(trained: Path) -> None:
    tokenizer = bpe.load_tokenizer(trained.parent)
    encoding = tokenizer.encode("x = 1234567890")
    digits = [token for token in encoding.tokens if any(c.isdigit() for c in token)]
    assert digits == list("1234567890")


@pytest.mark.parametrize("text", [UNICODE_CODE, " leading space", "<file_sep>a.py\n\x00\x7f\r\n", ""])
def test_round_trip_is_lossless(trained: Path, text: str) -> None:
    tokenizer = bpe.load_tokenizer(trained.parent)
    assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text


def test_tokenizer_json_is_byte_identical_across_runs(trained: Path, make_context) -> None:
    first = trained.read_bytes()
    run_tokenizer(make_context("tokenizer"))
    assert trained.read_bytes() == first
    assert b"/tmp" not in first and str(trained.parent.parent).encode() not in first


def test_tokenizer_learns_only_from_train_split(make_context, tmp_path: Path) -> None:
    write_corpus(tmp_path)
    run_tokenizer(make_context("tokenizer"))
    first = (tmp_path / layout.TOKENIZER / bpe.TOKENIZER_FILE).read_bytes()
    write_docs(tmp_path, "val", [["<repo_name>zzz<file_sep>qqq.txt\n" + "zq" * 5000 + "<|endoftext|>"]])
    run_tokenizer(make_context("tokenizer"))
    assert (tmp_path / layout.TOKENIZER / bpe.TOKENIZER_FILE).read_bytes() == first


def test_too_small_vocab_fails_with_the_fix(make_context, tmp_path: Path, smoke_cfg) -> None:
    write_corpus(tmp_path)
    cfg = smoke_cfg.copy()
    cfg.tokenizer.bpe.vocab_size = 200
    with pytest.raises(StageError, match="raise it above 294"):
        run_tokenizer(make_context("tokenizer", cfg))
    assert not (tmp_path / layout.TOKENIZER).exists()


def test_empty_train_split_fails_clearly(make_context, tmp_path: Path) -> None:
    write_docs(tmp_path, "train", [[None, ""]])
    with pytest.raises(StageError, match="no non-empty document"):
        run_tokenizer(make_context("tokenizer"))
    assert not (tmp_path / layout.TOKENIZER).exists()
