"""Packing ids into fixed-length rows, the memmap reader, and the tokenize stage end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_tokenizer import repo_doc, write_corpus, write_docs

from starbuild.core import layout
from starbuild.core.stage import StageError
from starbuild.tokenizer import bpe, pack
from starbuild.tokenizer.stage import run_tokenizer
from starbuild.tokenizer.tokenize_stage import run_tokenize


def test_packer_cuts_exact_rows_and_counts_the_tail() -> None:
    out = io.BytesIO()
    packer = pack.Packer(out, seq_length=4, dtype=np.dtype("<u2"))
    for ids in ([1, 2, 3], [], [4, 5, 6, 7, 8], [9, 258]):
        packer.add(np.array(ids))
    # Rows 1-4 and 5-8; 9 and 258 never fill a third row.
    expected = bytes([1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0])
    assert out.getvalue() == expected
    assert (packer.tokens, packer.sequences, packer.packed_tokens, packer.dropped_tail) == (10, 2, 8, 2)


def test_packer_writes_nothing_until_a_row_is_full() -> None:
    out = io.BytesIO()
    packer = pack.Packer(out, seq_length=3, dtype=np.dtype("<u4"))
    packer.add(np.array([7, 70000]))
    assert out.getvalue() == b"" and packer.dropped_tail == 2
    packer.add(np.array([1]))
    assert out.getvalue() == (7).to_bytes(4, "little") + (70000).to_bytes(4, "little") + b"\x01\0\0\0"
    assert packer.dropped_tail == 0


def test_packer_rejects_ids_that_do_not_fit() -> None:
    packer = pack.Packer(io.BytesIO(), seq_length=2, dtype=pack.token_dtype(512))
    with pytest.raises(ValueError, match="does not fit uint16"):
        packer.add(np.array([1, 65536]))


def test_dtype_is_uint16_while_every_id_fits() -> None:
    assert pack.token_dtype(512) == np.dtype("<u2")
    assert pack.token_dtype(65536) == np.dtype("<u2")
    assert pack.token_dtype(65537) == np.dtype("<u4")


def _write_split(directory: Path, rows: np.ndarray, split: str, meta: dict) -> None:
    with pack.bin_file(directory, split).open("wb") as handle:
        packer = pack.Packer(handle, rows.shape[1], np.dtype("<u2"))
        packer.add(rows.ravel())
    meta[f"{split}_sequences"] = packer.sequences


def test_open_tokens_maps_rows_read_only(tmp_path: Path) -> None:
    train = np.arange(12).reshape(3, 4)
    meta = {"dtype": "uint16", "seq_length": 4}
    _write_split(tmp_path, train, "train", meta)
    _write_split(tmp_path, train[:1] + 100, "val", meta)
    pack.write_meta(tmp_path, meta)
    mapped = pack.open_tokens(tmp_path, "train")
    assert mapped.shape == (3, 4) and mapped.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(mapped, train)
    np.testing.assert_array_equal(pack.open_tokens(tmp_path, "val"), [[100, 101, 102, 103]])
    with pytest.raises(ValueError):
        mapped[0, 0] = 1
    assert pack.read_meta(tmp_path) == meta


def test_open_tokens_refuses_a_file_that_disagrees_with_meta(tmp_path: Path) -> None:
    meta = {"dtype": "uint16", "seq_length": 4}
    _write_split(tmp_path, np.arange(8).reshape(2, 4), "train", meta)
    meta["train_sequences"] = 3
    pack.write_meta(tmp_path, meta)
    with pytest.raises(ValueError, match="meta.json promises 24"):
        pack.open_tokens(tmp_path, "train")


@pytest.fixture
def corpus(make_context, tmp_path: Path) -> Path:
    """A docs table and the tokenizer trained on it; return the root."""
    write_corpus(tmp_path)
    run_tokenizer(make_context("tokenizer"))
    return tmp_path


def _expected_ids(root: Path, texts: list[str]) -> np.ndarray:
    tokenizer = bpe.load_tokenizer(root / layout.TOKENIZER)
    return np.concatenate([tokenizer.encode(text).ids for text in texts])


def _docs(root: Path, split: str) -> list[str]:
    return [t for shard in sorted((root / layout.DOCS / split).glob("part-*.parquet"))
            for t in pq.read_table(shard).column("text").to_pylist() if t]


def test_tokenize_packs_docs_in_shard_then_row_order(corpus: Path, make_context, smoke_cfg) -> None:
    run_tokenize(make_context("tokenize"))
    tokens_dir = corpus / layout.TOKENS
    meta = pack.read_meta(tokens_dir)
    seq = smoke_cfg.tokenizer.pack.seq_length
    vocab = bpe.load_tokenizer(corpus / layout.TOKENIZER).get_vocab_size()
    assert set(meta) == {"dtype", "seq_length", "vocab_size", "train_sequences", "val_sequences",
                         "train_tokens", "val_tokens", "dropped_tail_tokens"}
    assert (meta["dtype"], meta["seq_length"], meta["vocab_size"]) == ("uint16", seq, vocab)
    metrics = json.loads((corpus / layout.metrics_file("tokenize")).read_text())
    for split in pack.SPLITS:
        expected = _expected_ids(corpus, _docs(corpus, split))
        rows = pack.open_tokens(tokens_dir, split)
        n = len(expected) // seq
        assert rows.shape == (n, seq) and n > 0
        np.testing.assert_array_equal(rows.ravel(), expected[: n * seq])
        assert meta[f"{split}_tokens"] == n * seq
        assert meta["dropped_tail_tokens"][split] == len(expected) - n * seq
        m = metrics[split]
        assert (m["tokens"], m["sequences"]) == (len(expected), n)
        assert m["dropped_tail_tokens"] == len(expected) % seq
        assert m["bytes_per_token"] == round(m["bytes"] / m["tokens"], 4) and m["bytes_per_token"] > 1
    assert metrics["train"]["docs"] == 12
    assert metrics["train"]["docs_dropped"] == {"empty_text": 1, "null_text": 1}
    assert metrics["val"]["docs"] == 2 and metrics["train"]["eos_appended"] == 0
    assert json.loads((tokens_dir / "meta.json").read_text()) == meta
    assert (tokens_dir / "meta.json").read_text() == json.dumps(meta, indent=2, sort_keys=True) + "\n"


def test_tokenize_output_is_deterministic_and_chunk_independent(
    corpus: Path, make_context, smoke_cfg
) -> None:
    def snapshot() -> dict[str, bytes]:
        files = sorted((corpus / layout.TOKENS).iterdir())
        return {p.name: p.read_bytes() for p in files} | {
            "metrics": (corpus / layout.metrics_file("tokenize")).read_bytes()}

    run_tokenize(make_context("tokenize"))
    first = snapshot()
    assert set(first) == {"meta.json", "train.bin", "val.bin", "metrics"}
    run_tokenize(make_context("tokenize"))
    assert snapshot() == first
    cfg = smoke_cfg.copy()
    cfg.tokenizer.pack.encode_chunk_bytes = 1
    run_tokenize(make_context("tokenize", cfg))
    assert snapshot() == first


def test_document_without_end_token_gets_one(corpus: Path, make_context) -> None:
    doc = repo_doc("pypi/v0", 5, 200)
    write_docs(corpus, "val", [[doc.removesuffix("<|endoftext|>"), doc]])
    run_tokenize(make_context("tokenize"))
    metrics = json.loads((corpus / layout.metrics_file("tokenize")).read_text())
    assert metrics["val"]["eos_appended"] == 1
    rows = pack.open_tokens(corpus / layout.TOKENS, "val").ravel()
    expected = _expected_ids(corpus, [doc, doc])
    np.testing.assert_array_equal(rows, expected[: len(rows)])


def test_a_damaged_tokenizer_fails_in_one_line_naming_it(corpus: Path, make_context) -> None:
    tokenizer_json = corpus / layout.TOKENIZER / layout.TOKENIZER_FILE
    tokenizer_json.write_text(tokenizer_json.read_text()[:100])
    with pytest.raises(StageError, match=r"^models/tokenizer/tokenizer.json is not readable \(Exception: .*\); "
                                         r"restore it with `dvc checkout models/tokenizer` or rebuild it with "
                                         r"`dvc repro -f -s tokenizer`$"):
        run_tokenize(make_context("tokenize"))
    assert not (corpus / layout.TOKENS).exists()


def test_split_smaller_than_one_row_fails_with_the_fix(corpus: Path, make_context, smoke_cfg) -> None:
    write_docs(corpus, "val", [["<repo_name>x<file_sep>a.py\npass\n<|endoftext|>"]])
    with pytest.raises(StageError, match="val split has .* lower tokenizer.pack.seq_length or add origins"):
        run_tokenize(make_context("tokenize"))
    assert not (corpus / layout.TOKENS).exists()
    assert not list((corpus / layout.TOKENS.parent).glob(".tmp-*"))


def test_bad_seq_length_fails_at_once(corpus: Path, make_context, smoke_cfg) -> None:
    cfg = smoke_cfg.copy()
    cfg.tokenizer.pack.seq_length = 0
    with pytest.raises(StageError, match="tokenizer.pack.seq_length=0"):
        run_tokenize(make_context("tokenize", cfg))
