"""Packing ids into fixed-length rows, the memmap reader, and the tokenize stage end to end."""

from __future__ import annotations

import hashlib
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


class ListSink:
    """Keeps what a Packer writes, as bytes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, ids: np.ndarray) -> None:
        self.data += ids.tobytes()


def test_packer_cuts_exact_rows_and_counts_the_tail() -> None:
    out = ListSink()
    packer = pack.Packer(out, seq_length=4, dtype=np.dtype("<u2"))
    for ids in ([1, 2, 3], [], [4, 5, 6, 7, 8], [9, 258]):
        packer.add(np.array(ids))
    # Rows 1-4 and 5-8; 9 and 258 never fill a third row.
    expected = bytes([1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0])
    assert out.data == expected
    assert (packer.tokens, packer.sequences, packer.packed_tokens, packer.dropped_tail) == (10, 2, 8, 2)


def test_packer_writes_nothing_until_a_row_is_full() -> None:
    out = ListSink()
    packer = pack.Packer(out, seq_length=3, dtype=np.dtype("<u4"))
    packer.add(np.array([7, 70000]))
    assert out.data == b"" and packer.dropped_tail == 2
    packer.add(np.array([1]))
    assert out.data == (7).to_bytes(4, "little") + (70000).to_bytes(4, "little") + b"\x01\0\0\0"
    assert packer.dropped_tail == 0


def test_packer_rejects_ids_that_do_not_fit() -> None:
    packer = pack.Packer(ListSink(), seq_length=2, dtype=pack.token_dtype(512))
    with pytest.raises(ValueError, match="does not fit uint16"):
        packer.add(np.array([1, 65536]))


def test_dtype_is_uint16_while_every_id_fits() -> None:
    assert pack.token_dtype(512) == np.dtype("<u2")
    assert pack.token_dtype(65536) == np.dtype("<u2")
    assert pack.token_dtype(65537) == np.dtype("<u4")


def test_shard_size_is_whole_sequences() -> None:
    assert pack.PackConfig(seq_length=64, encode_chunk_bytes=1, shard_tokens=1000).shard_sequences == 15
    assert pack.PackConfig(seq_length=64, encode_chunk_bytes=1, shard_tokens=10).shard_sequences == 1
    with pytest.raises(ValueError, match="shard_tokens=0"):
        pack.PackConfig(seq_length=64, encode_chunk_bytes=1, shard_tokens=0)


def _write_split(directory: Path, rows: np.ndarray, split: str, shard_sequences: int) -> dict:
    with pack.ShardWriter(directory, split, rows.shape[1], shard_sequences, np.dtype("<u2")) as writer:
        packer = pack.Packer(writer, rows.shape[1], np.dtype("<u2"))
        # Uneven pieces, so rows reach the writer in batches that straddle shard boundaries.
        for piece in np.array_split(rows.ravel(), 4):
            packer.add(piece)
    return {"sequences": packer.sequences, "tokens": packer.packed_tokens, "dropped_tail_tokens": 0,
            "shards": writer.shards}


def _write_tokens(directory: Path, train: np.ndarray, val: np.ndarray, shard_sequences: int) -> dict:
    index = {"dtype": "uint16", "seq_length": train.shape[1], "vocab_size": 512, "shard_sequences": shard_sequences,
             "splits": {"train": _write_split(directory, train, "train", shard_sequences),
                        "val": _write_split(directory, val, "val", shard_sequences)}}
    pack.write_index(directory, index)
    return index


def test_shards_split_rows_and_read_back_across_boundaries(tmp_path: Path) -> None:
    train = np.arange(44).reshape(11, 4)
    index = _write_tokens(tmp_path, train, train[:1] + 100, shard_sequences=3)
    assert [entry["sequences"] for entry in index["splits"]["train"]["shards"]] == [3, 3, 3, 2]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.bin")) == [
        "train/part-00000.bin", "train/part-00001.bin", "train/part-00002.bin", "train/part-00003.bin",
        "val/part-00000.bin"]
    for entry in index["splits"]["train"]["shards"]:
        assert entry["sha256"] == hashlib.sha256((tmp_path / entry["path"]).read_bytes()).hexdigest()
    rows = pack.TokenShards(tmp_path, "train")
    assert len(rows) == 11
    for position in range(11):
        np.testing.assert_array_equal(rows[position], train[position])
    np.testing.assert_array_equal(np.stack(list(rows)), train)
    with pytest.raises(IndexError):
        rows[11]
    with pytest.raises(ValueError):
        rows.shards[0][0, 0] = 1
    np.testing.assert_array_equal(pack.TokenShards(tmp_path, "val")[0], [100, 101, 102, 103])
    assert pack.read_index(tmp_path) == {"format": pack.INDEX_FORMAT, **index}
    pack.verify_shards(tmp_path)


def test_shards_refuse_a_file_that_disagrees_with_the_index(tmp_path: Path) -> None:
    _write_tokens(tmp_path, np.arange(16).reshape(4, 4), np.arange(4).reshape(1, 4), shard_sequences=2)
    shard = tmp_path / "train" / "part-00001.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    pack.TokenShards(tmp_path, "train")
    with pytest.raises(ValueError, match="part-00001.bin does not match its SHA-256"):
        pack.verify_shards(tmp_path)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(ValueError, match="index.json promises 16"):
        pack.TokenShards(tmp_path, "train")


def test_a_directory_without_index_names_the_rebuild(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="dvc repro -f -s tokenize"):
        pack.TokenShards(tmp_path, "train")
    (tmp_path / "index.json").write_text('{"format": 0}')
    with pytest.raises(ValueError, match="format 0"):
        pack.read_index(tmp_path)


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


def _split_rows(tokens_dir: Path, split: str) -> np.ndarray:
    return np.stack(list(pack.TokenShards(tokens_dir, split)))


def test_tokenize_packs_docs_in_shard_then_row_order(corpus: Path, make_context, smoke_cfg) -> None:
    run_tokenize(make_context("tokenize"))
    tokens_dir = corpus / layout.TOKENS
    index = pack.read_index(tokens_dir)
    seq = smoke_cfg.tokenizer.pack.seq_length
    per_shard = smoke_cfg.tokenizer.pack.shard_tokens // seq
    vocab = bpe.load_tokenizer(corpus / layout.TOKENIZER).get_vocab_size()
    assert set(index) == {"format", "dtype", "seq_length", "vocab_size", "shard_sequences", "splits"}
    assert (index["dtype"], index["seq_length"], index["vocab_size"]) == ("uint16", seq, vocab)
    assert index["shard_sequences"] == per_shard
    metrics = json.loads((corpus / layout.metrics_file("tokenize")).read_text())
    for split in pack.SPLITS:
        expected = _expected_ids(corpus, _docs(corpus, split))
        rows = _split_rows(tokens_dir, split)
        n = len(expected) // seq
        assert rows.shape == (n, seq) and n > 0
        np.testing.assert_array_equal(rows.ravel(), expected[: n * seq])
        entry = index["splits"][split]
        assert (entry["sequences"], entry["tokens"]) == (n, n * seq)
        assert entry["dropped_tail_tokens"] == len(expected) - n * seq
        # Every shard is full but the last, and the files hold exactly the split's rows.
        sizes = [shard["sequences"] for shard in entry["shards"]]
        assert sizes == [per_shard] * (len(sizes) - 1) + [n - per_shard * (len(sizes) - 1)]
        m = metrics[split]
        assert (m["tokens"], m["sequences"], m["shards"]) == (len(expected), n, len(sizes))
        assert m["dropped_tail_tokens"] == len(expected) % seq
        assert m["bytes_per_token"] == round(m["bytes"] / m["tokens"], 4) and m["bytes_per_token"] > 1
    assert metrics["train"]["shards"] > 1
    assert metrics["train"]["docs"] == 12
    assert metrics["train"]["docs_dropped"] == {"empty_text": 1, "null_text": 1}
    assert metrics["val"]["docs"] == 2 and metrics["train"]["eos_appended"] == 0
    assert (tokens_dir / "index.json").read_text() == json.dumps(index, indent=2, sort_keys=True) + "\n"
    pack.verify_shards(tokens_dir)


def test_tokenize_output_is_deterministic_and_chunk_independent(
    corpus: Path, make_context, smoke_cfg
) -> None:
    def snapshot() -> dict[str, bytes]:
        tokens_dir = corpus / layout.TOKENS
        files = sorted(path for path in tokens_dir.rglob("*") if path.is_file())
        return {str(p.relative_to(tokens_dir)): p.read_bytes() for p in files} | {
            "metrics": (corpus / layout.metrics_file("tokenize")).read_bytes()}

    run_tokenize(make_context("tokenize"))
    first = snapshot()
    assert {"index.json", "train/part-00000.bin", "train/part-00001.bin", "val/part-00000.bin"} <= set(first)
    run_tokenize(make_context("tokenize"))
    assert snapshot() == first
    cfg = smoke_cfg.copy()
    cfg.tokenizer.pack.encode_chunk_bytes = 1
    run_tokenize(make_context("tokenize", cfg))
    assert snapshot() == first
    # Shards encoded in two worker processes pack to the same rows as in this process.
    for workers in (1, 2):
        cfg.executor.workers = workers
        run_tokenize(make_context("tokenize", cfg))
        assert snapshot() == first, workers


def test_shard_size_changes_files_not_rows(corpus: Path, make_context, smoke_cfg) -> None:
    run_tokenize(make_context("tokenize"))
    before = {split: _split_rows(corpus / layout.TOKENS, split) for split in pack.SPLITS}
    cfg = smoke_cfg.copy()
    cfg.tokenizer.pack.shard_tokens = 10**9
    run_tokenize(make_context("tokenize", cfg))
    for split in pack.SPLITS:
        assert len(pack.read_index(corpus / layout.TOKENS)["splits"][split]["shards"]) == 1
        np.testing.assert_array_equal(_split_rows(corpus / layout.TOKENS, split), before[split])


def test_document_without_end_token_gets_one(corpus: Path, make_context) -> None:
    doc = repo_doc("pypi/v0", 5, 200)
    write_docs(corpus, "val", [[doc.removesuffix("<|endoftext|>"), doc]])
    run_tokenize(make_context("tokenize"))
    metrics = json.loads((corpus / layout.metrics_file("tokenize")).read_text())
    assert metrics["val"]["eos_appended"] == 1
    rows = _split_rows(corpus / layout.TOKENS, "val").ravel()
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
