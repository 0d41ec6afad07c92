"""Pack a stream of token ids into fixed-length rows in memory-mappable shards, and read them back.

On disk a tokens directory holds, per split, `<split>/part-NNNNN.bin` files: headerless
little-endian arrays of shape (sequences, seq_length), row-major, each at most
`shard_sequences` rows, all full but the last. `index.json` names every shard in order with its
row count and SHA-256, and gives the dtype, seq_length and vocab_size; a split's rows are its
shards' rows concatenated. A split never shares a shard (or a row) with another split.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from starbuild.core.layout import SPLITS

INDEX_FILE = "index.json"
# Bumped when the layout changes, so a reader never misreads an older directory.
INDEX_FORMAT = 1
UINT16_MAX_VOCAB = 2**16


@dataclass(frozen=True)
class PackConfig:
    """The `tokenizer.pack` config section."""

    # Tokens in every packed training sequence.
    seq_length: int
    # Documents are encoded in batches of about this many UTF-8 bytes (bounds memory only).
    encode_chunk_bytes: int
    # Tokens per shard file, rounded down to whole sequences (at least one).
    shard_tokens: int

    def __post_init__(self) -> None:
        for key in ("seq_length", "encode_chunk_bytes", "shard_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be a positive integer")

    @property
    def shard_sequences(self) -> int:
        """Rows per shard file."""
        return max(1, self.shard_tokens // self.seq_length)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest little-endian unsigned dtype that holds every id below `vocab_size`."""
    return np.dtype("<u2") if vocab_size <= UINT16_MAX_VOCAB else np.dtype("<u4")


class RowSink(Protocol):
    """Where a Packer sends its full rows: a flat array whose length is a multiple of seq_length."""

    def write(self, ids: np.ndarray) -> None: ...


class ShardWriter:
    """Write the rows of one split into `<split>/part-NNNNN.bin` files of at most `shard_sequences` rows."""

    def __init__(self, directory: Path, split: str, seq_length: int, shard_sequences: int, dtype: np.dtype) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.directory = Path(directory)
        self.split = split
        self.seq_length = seq_length
        self.shard_sequences = shard_sequences
        self.dtype = np.dtype(dtype)
        self.shards: list[dict[str, Any]] = []
        self._handle: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._rows = 0

    def write(self, ids: np.ndarray) -> None:
        """Append whole rows (a flat array), opening a new shard whenever the current one is full."""
        rows = np.ascontiguousarray(ids, dtype=self.dtype).reshape(-1, self.seq_length)
        while len(rows):
            if self._handle is None:
                self._open()
            take = min(self.shard_sequences - self._rows, len(rows))
            chunk = rows[:take].tobytes()
            self._handle.write(chunk)
            self._digest.update(chunk)
            self._rows += take
            rows = rows[take:]
            if self._rows == self.shard_sequences:
                self._finish()

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard; the index entries of every shard written, in order."""
        if self._handle is not None:
            self._finish()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        path = self.directory / self._relative(len(self.shards))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("wb")
        self._digest = hashlib.sha256()
        self._rows = 0

    def _finish(self) -> None:
        assert self._handle is not None
        self._handle.close()
        self._handle = None
        self.shards.append({"path": self._relative(len(self.shards)), "sequences": self._rows,
                            "sha256": self._digest.hexdigest()})

    def _relative(self, number: int) -> str:
        return f"{self.split}/part-{number:05d}.bin"


class Packer:
    """Cut a stream of ids into rows of `seq_length`, sending each full row to `sink` as soon as it exists.

    Only the unfinished row is kept between calls, so memory does not grow with the corpus.
    """

    def __init__(self, sink: RowSink, seq_length: int, dtype: np.dtype) -> None:
        if seq_length < 1:
            raise ValueError(f"seq_length must be positive, got {seq_length}")
        self.sink = sink
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
            self.sink.write(stream[:full])
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


def write_index(directory: Path, index: dict[str, Any]) -> Path:
    """Write index.json with sorted keys so its bytes depend only on the values."""
    path = Path(directory) / INDEX_FILE
    path.write_text(json.dumps({"format": INDEX_FORMAT, **index}, indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


def read_index(directory: Path) -> dict[str, Any]:
    """The index.json of a tokens directory: dtype, seq_length, vocab_size and each split's shards."""
    path = Path(directory) / INDEX_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (a tokens directory from before shards has meta.json "
                                f"instead); rebuild it with `dvc repro -f -s tokenize`")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path} has format {index.get('format')!r}, this starbuild reads {INDEX_FORMAT}; "
                         f"rebuild it with `dvc repro -f -s tokenize`")
    return index


class TokenShards(Sequence[np.ndarray]):
    """The rows of one split of a tokens directory, read through a read-only memory map per shard."""

    def __init__(self, directory: Path, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        index = read_index(directory)
        self.seq_length = int(index["seq_length"])
        dtype = np.dtype(index["dtype"]).newbyteorder("<")
        self.shards = [_map_shard(Path(directory), entry, dtype, self.seq_length)
                       for entry in index["splits"][split]["shards"]]
        # starts[k] is the split-wide number of shard k's first row.
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, position: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= position < len(self):
            raise IndexError(f"row {position} of {len(self)}")
        shard = bisect.bisect_right(self.starts, position) - 1
        return self.shards[shard][position - self.starts[shard]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for shard in self.shards:
            yield from shard


def _map_shard(directory: Path, entry: dict[str, Any], dtype: np.dtype, seq_length: int) -> np.memmap:
    path = directory / entry["path"]
    shape = (int(entry["sequences"]), seq_length)
    expected = shape[0] * shape[1] * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(f"{path} holds {actual} bytes, {INDEX_FILE} promises {expected}; rebuild it")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def verify_shards(directory: Path) -> None:
    """Check every shard's SHA-256 against index.json; raise ValueError naming the first that differs."""
    index = read_index(directory)
    for split in index["splits"].values():
        for entry in split["shards"]:
            path = Path(directory) / entry["path"]
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            if digest.hexdigest() != entry["sha256"]:
                raise ValueError(f"{path} does not match its SHA-256 in {INDEX_FILE}; rebuild it")
