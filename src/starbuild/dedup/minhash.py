"""MinHash signatures and LSH band keys for near-dedup, as The Stack v2 ran it (spec §3.2).

A document is lowercased and split on non-word characters (anything but letters, numbers and `_`),
empty tokens dropped; its shingles are runs of `ngram` consecutive tokens. Permutation i maps a
shingle hash h to `((a_i * h + b_i) mod 2^64) >> 32`, and the signature keeps the minimum over the
shingles. LSH splits the signature into `bands` bands of `rows` values, chosen like datasketch's
`_optimal_param`; two documents are candidates when they share a band key in the same band.

Where this departs from BigCode (whose signatures it does not reproduce bit for bit, only in
distribution), for speed, measured in bench/bench_dedup.py:
- a shingle's 32-bit hash combines its tokens' xxh64 hashes (each distinct token of a batch is
  hashed once) instead of an xxh32 of the space-joined shingle;
- the permutations are Dietzfelbinger's multiply-add-shift, a 2-independent family like BigCode's
  `(a*h + b) mod (2^32 - 5)`: the shift commutes with the minimum, so a signature costs one multiply,
  one add and one minimum per shingle and permutation, and no division;
- everything runs over a whole batch of documents at once (Arrow kernels for lowercasing and
  splitting, numpy for the rest), not one document at a time.
The permutations are drawn from numpy's PCG64 seeded with `seed`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# Shingles per block in `signature_matrix`: 512 x 250 uint64 is 1 MB, so the multiply, add and
# minimum passes stay in cache (4096 rows measured ~1.7x slower on this machine).
BLOCK = 512
# Points per integration interval in `bands_rows`; the error is ~1e-7, far below the gap between
# the best (b, r) and the runner-up.
GRID = 4097

# RE2 (Arrow's regex engine): a run of anything that is not a letter, a number or `_`, i.e. Python's
# `\W+` for str patterns.
_SEPARATOR = r"[^\pL\pN_]+"
# Odd 64-bit multipliers of a shingle's token hashes, one per position (from PCG64(0)): the combined
# hash depends on the order of the tokens, not only on which tokens they are.
_POSITION_SEED = 0
_HIGH = np.uint64(32)
_NO_MINIMUM = np.uint64(np.iinfo(np.uint64).max)


@dataclass(frozen=True)
class MinHashParams:
    """Near-dedup parameters: permutations, shingle size, short-document cut-off, threshold, seed."""

    num_perm: int = 250
    ngram: int = 5
    min_tokens: int = 5
    threshold: float = 0.7
    seed: int = 42

    def __post_init__(self) -> None:
        """Reject out-of-range values, naming the field."""
        for name in ("num_perm", "ngram", "min_tokens"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        value = self.threshold
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
            raise ValueError(f"threshold must be a number in (0, 1), got {value!r}")

    def bands_rows(self) -> tuple[int, int]:
        """The LSH (bands, rows) for this threshold and num_perm (cached)."""
        return optimal_bands_rows(float(self.threshold), self.num_perm)


def _check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError naming `name` unless value is an integer (Python or numpy) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def collision_probability(s: np.ndarray, bands: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """P(two docs of Jaccard s share a band): 1 - (1 - s^r)^b, broadcast over (b, r) x s."""
    return 1.0 - (1.0 - s ** rows[:, None]) ** bands[:, None]


def _area(curve: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Trapezoid integral over [lo, hi] of each row of curve, sampled on GRID even points."""
    return np.trapezoid(curve, dx=(hi - lo) / (GRID - 1), axis=1)


def _candidate_pairs(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (b, r) with b * r <= num_perm, b ascending then r ascending (datasketch's scan order)."""
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands, rows = np.array(pairs, dtype=np.float64).T
    return bands, rows


@functools.lru_cache(maxsize=64)
def optimal_bands_rows(threshold: float, num_perm: int) -> tuple[int, int]:
    """(b, r) minimising the equal-weighted false-positive plus false-negative area at threshold."""
    bands, rows = _candidate_pairs(num_perm)
    below = np.linspace(0.0, threshold, GRID)
    above = np.linspace(threshold, 1.0, GRID)
    false_positive = _area(collision_probability(below, bands, rows), 0.0, threshold)
    false_negative = _area(1.0 - collision_probability(above, bands, rows), threshold, 1.0)
    # argmin keeps the first minimum, as datasketch's strict `<` scan does on ties.
    best = int(np.argmin(0.5 * false_positive + 0.5 * false_negative))
    return int(bands[best]), int(rows[best])


def _as_arrow(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Texts as one Arrow string array; a lone surrogate (which Arrow cannot hold) becomes `?`, a separator."""
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts
    try:
        return pa.array(texts, pa.string())
    except (pa.ArrowException, UnicodeError):
        return pa.array([t if t is None else t.encode("utf-8", "replace").decode("utf-8") for t in texts], pa.string())


def token_table(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Every token of every text in order (lowercased, split on non-word runs), and the text index of each."""
    lists = pc.split_pattern_regex(pc.utf8_lower(_as_arrow(texts)), _SEPARATOR)
    flat, parents = pc.list_flatten(lists), pc.list_parent_indices(lists)
    # A text that starts or ends with a separator splits into an empty first or last token.
    nonempty = pc.greater(pc.binary_length(flat), 0)
    return flat.filter(nonempty), parents.filter(nonempty).to_numpy().astype(np.int64)


def tokens(text: str) -> list[str]:
    """The lowercased text split on non-word characters, empty tokens dropped."""
    return token_table([text])[0].to_pylist()


def shingles(text: str, ngram: int, min_tokens: int) -> set[str]:
    """The set of shingles of text (tokens joined by one space); empty when it has fewer than min_tokens."""
    words = tokens(text)
    if len(words) < min_tokens:
        return set()
    if len(words) < ngram:
        # BigCode's ngrams(): a document long enough to count but shorter than one shingle is one.
        return {" ".join(words)}
    return set(map(" ".join, zip(*(words[i:] for i in range(ngram)), strict=False)))


@functools.lru_cache(maxsize=8)
def _position_multipliers(ngram: int) -> np.ndarray:
    """One odd uint64 multiplier per shingle position."""
    rng = np.random.Generator(np.random.PCG64(_POSITION_SEED))
    return rng.integers(0, np.iinfo(np.uint64).max, size=ngram, dtype=np.uint64, endpoint=True) | np.uint64(1)


def _token_hashes(flat: pa.Array) -> np.ndarray:
    """xxh64 (seed 0) of every token's UTF-8 bytes, each distinct token hashed once."""
    encoded = pc.dictionary_encode(flat)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary.to_pylist()
    hashes = np.fromiter(map(xxhash.xxh64_intdigest, distinct), dtype=np.uint64, count=len(distinct))
    return hashes[encoded.indices.to_numpy()]


def shingle_table(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray, ngram: int,
                  min_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(text index int64, shingle hash uint32) of every distinct shingle of every text, sorted by both.

    A text with fewer than `min_tokens` tokens has no row; one with at least `min_tokens` but fewer
    than `ngram` has one shingle of all its tokens (BigCode's ngrams()).
    """
    flat, parents = token_table(texts)
    hashes = _token_hashes(flat) if len(flat) else np.empty(0, np.uint64)
    count = len(texts)
    lengths = np.bincount(parents, minlength=count)
    multipliers = _position_multipliers(ngram)
    # Wrapping uint64 arithmetic is the hash: overflow is intended.
    windows = max(hashes.size - ngram + 1, 0)
    combined = np.zeros(windows, dtype=np.uint64)
    for position in range(ngram):
        combined += hashes[position : position + windows] * multipliers[position]
    owners = parents[:windows]
    # A window counts when its last token belongs to the same text as its first, and that text is long enough.
    valid = (owners == parents[ngram - 1 : ngram - 1 + windows]) & (lengths[owners] >= min_tokens)
    owners, combined = owners[valid], combined[valid]
    short = np.flatnonzero((lengths >= min_tokens) & (lengths < ngram))
    if short.size:
        starts = np.concatenate(([0], np.cumsum(lengths)))
        extra = [(hashes[starts[t] : starts[t] + lengths[t]] * multipliers[: lengths[t]]).sum(dtype=np.uint64)
                 for t in short]
        owners = np.concatenate((owners, short))
        combined = np.concatenate((combined, np.array(extra, dtype=np.uint64)))
    keys = _sorted_distinct((owners.astype(np.uint64) << _HIGH) | (combined >> _HIGH))
    return (keys >> _HIGH).astype(np.int64), (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's np.unique measured ~80x slower than a sort on 500k uint64."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if values.size else values


def shingle_hashes(text: str, ngram: int, min_tokens: int) -> np.ndarray:
    """Sorted distinct 32-bit shingle hashes of one text, uint32; empty for a short text."""
    return shingle_table([text], ngram, min_tokens)[1]


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutations' (a, b), uint64: uniform 64-bit draws from PCG64(seed), all of a then all of b."""
    rng = np.random.Generator(np.random.PCG64(seed))
    top = np.iinfo(np.uint64).max
    a = rng.integers(0, top, size=num_perm, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, top, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def signature_matrix(owners: np.ndarray, hashes: np.ndarray, count: int, a: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
    """Row t: the signature of text t from the (owner, hash) rows of `shingle_table`, uint32 (count, num_perm).

    A text without shingles gets a row of 0xFFFFFFFF; `owners` must be sorted (shingle_table's are).
    """
    hashes = np.asarray(hashes)
    if hashes.dtype != np.uint32 or hashes.ndim != 1:
        raise ValueError(f"shingle hashes must be a uint32 vector, got {hashes.dtype} {hashes.shape}")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be equal-length vectors, got shapes {a.shape} and {b.shape}")
    best = np.full((count, a.size), _NO_MINIMUM, dtype=np.uint64)
    values = np.empty((min(BLOCK, hashes.size), a.size), dtype=np.uint64)
    for start in range(0, hashes.size, BLOCK):
        block_owners = owners[start : start + BLOCK]
        block = values[: block_owners.size]
        np.multiply(hashes[start : start + BLOCK, None].astype(np.uint64), a, out=block)
        block += b
        # One minimum per text present in the block; a text spanning blocks merges into `best`.
        firsts = np.flatnonzero(np.diff(block_owners, prepend=-1))
        present = block_owners[firsts]
        best[present] = np.minimum(best[present], np.minimum.reduceat(block, firsts, axis=0))
    # The top 32 bits are the permutation's value; the shift commutes with the minimum.
    return (best >> _HIGH).astype(np.uint32)


def signature(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature of one text's uint32 shingle hashes, uint32 (num_perm,); empty (0,) when there are none."""
    hashes = np.asarray(hashes)
    if hashes.size == 0 and hashes.dtype == np.uint32:
        return np.empty(0, dtype=np.uint32)
    return signature_matrix(np.zeros(hashes.size, np.int64), hashes, 1, a, b)[0]


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Band i's key: xxh64(seed=i) of sig[i*rows:(i+1)*rows] as little-endian uint32 bytes, as int64.

    Seeding with the band index makes equal rows in different bands hash apart, so a caller may
    bucket on the key alone or on (band, key). An empty signature (a short document) gives an
    empty (0,) array: it has no bands and never matches.
    """
    sig = np.asarray(sig)
    if sig.size == 0:
        return np.empty(0, dtype=np.int64)
    if bands < 1 or rows < 1 or bands * rows > sig.size:
        raise ValueError(f"{bands} bands x {rows} rows do not fit a signature of {sig.size} values")
    # An explicit little-endian layout keeps the keys equal across machines.
    raw = memoryview(np.ascontiguousarray(sig, dtype="<u4").tobytes())
    width = 4 * rows
    keys = [xxhash.xxh64_intdigest(raw[i * width : (i + 1) * width], seed=i) for i in range(bands)]
    return np.array(keys, dtype=np.uint64).view(np.int64)


def estimate_jaccard(s1: np.ndarray, s2: np.ndarray) -> float:
    """The fraction of permutations whose minima agree; 0.0 when either signature is empty."""
    if s1.size == 0 or s2.size == 0:
        return 0.0
    if s1.shape != s2.shape:
        raise ValueError(f"signatures differ in shape: {s1.shape} vs {s2.shape}")
    return float(np.count_nonzero(s1 == s2)) / s1.size


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 0.0 when both are empty (short documents never match)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class SignatureBatch:
    """Signs many texts with one parameter set: the permutations and (bands, rows) are fixed once."""

    def __init__(self, params: MinHashParams | None = None) -> None:
        """Draw the permutations and pick the bands for params (defaults: BigCode v2's)."""
        self.params = MinHashParams() if params is None else params
        self.a, self.b = permutations(self.params.num_perm, self.params.seed)
        self.bands, self.rows = self.params.bands_rows()

    def signature(self, text: str) -> np.ndarray:
        """The MinHash signature of one text; empty (0,) for a short text."""
        hashes = shingle_hashes(text, self.params.ngram, self.params.min_tokens)
        return signature(hashes, self.a, self.b)

    def signatures(self, texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
        """The signature of each text, in order (empty (0,) for a short one), computed as one batch."""
        owners, hashes = shingle_table(texts, self.params.ngram, self.params.min_tokens)
        matrix = signature_matrix(owners, hashes, len(texts), self.a, self.b)
        signed = np.zeros(len(texts), dtype=bool)
        signed[owners] = True
        return [row if has else np.empty(0, np.uint32) for row, has in zip(matrix, signed, strict=True)]

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """The LSH band keys of a signature, int64 (bands,); empty for an empty signature."""
        return band_keys(sig, self.bands, self.rows)


def signatures(texts: Sequence[str | None], params: MinHashParams | None = None) -> list[np.ndarray]:
    """The signature of each text under params (defaults: BigCode v2's)."""
    return SignatureBatch(params).signatures(texts)
