"""Pack a stream of token ids into fixed-length rows of a raw binary file, and read them back.

On disk, `data/tokens/<split>.bin` is a headerless little-endian array of shape
(n_sequences, seq_length), row-major; `meta.json` next to it gives the dtype and shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from starbuild.core.layout import SPLITS

META_FILE = "meta.json"
UINT16_MAX_VOCAB = 2**16


@dataclass(frozen=True)
class PackConfig:
    """The `tokenizer.pack` config section."""

    # Tokens in every packed training sequence.
    seq_length: int
    # Documents are encoded in batches of about this many UTF-8 bytes (bounds memory only).
    encode_chunk_bytes: int

    def __post_init__(self) -> None:
        for key in ("seq_length", "encode_chunk_bytes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be a positive integer")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned dtype that holds every id below `vocab_size`."""
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


def bin_file(directory: Path, split: str) -> Path:
    """The binary file of `split` inside a tokens directory."""
    return Path(directory) / f"{split}.bin"


class Packer:
    """Cut a stream of ids into rows of `seq_length`, writing each full row as soon as it exists.

    Only the unfinished row is kept between calls, so memory does not grow with the corpus.
    """

    def __init__(self, out: BinaryIO, seq_length: int, dtype: np.dtype) -> None:
        if seq_length < 1:
            raise ValueError(f"seq_length must be positive, got {seq_length}")
        self.out = out
        self.seq_length = seq_length
        self.dtype = np.dtype(dtype)
        self.carry = np.empty(0, dtype=self.dtype)
        self.tokens = 0
        self.sequences = 0

    def add(self, ids: np.ndarray) -> None:
        """Append `ids` to the stream and write every row they complete."""
        ids = np.asarray(ids)
        if ids.size and int(ids.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(ids.max())} does not fit {self.dtype.name}")
        self.tokens += int(ids.size)
        stream = np.concatenate([self.carry, ids.astype(self.dtype, copy=False)])
        rows = stream.size // self.seq_length
        full = rows * self.seq_length
        if rows:
            self.out.write(stream[:full].tobytes())
            self.sequences += rows
        self.carry = stream[full:].copy()

    @property
    def dropped_tail(self) -> int:
        """Tokens left over after the last full row; they are never written."""
        return int(self.carry.size)

    @property
    def packed_tokens(self) -> int:
        """Tokens written so far (sequences × seq_length)."""
        return self.sequences * self.seq_length


def write_meta(directory: Path, meta: dict[str, Any]) -> Path:
    """Write meta.json with sorted keys so its bytes depend only on the values."""
    path = Path(directory) / META_FILE
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_meta(directory: Path) -> dict[str, Any]:
    """The meta.json of a tokens directory (dtype, seq_length, vocab_size, counts per split)."""
    return json.loads((Path(directory) / META_FILE).read_text(encoding="utf-8"))


def open_tokens(directory: Path, split: str) -> np.memmap:
    """Memory-map `split` of a tokens directory as a read-only (n_sequences, seq_length) array."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    meta = read_meta(directory)
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    shape = (int(meta[f"{split}_sequences"]), int(meta["seq_length"]))
    path = bin_file(directory, split)
    expected = shape[0] * shape[1] * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(f"{path} holds {actual} bytes, meta.json promises {expected}; rebuild it")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)
