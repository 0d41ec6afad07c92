"""MinHash signatures and LSH band keys for near-dedup, as The Stack v2 ran it (spec §3.2).

A document is lowercased and split on non-word characters (Python's `\\W`: anything but letters,
numbers and `_`), empty tokens dropped; its shingles are runs of `ngram` consecutive tokens.
Permutation i maps a shingle hash h to `((a_i * h + b_i) mod 2^64) >> 32`, and the signature keeps
the minimum over the shingles. LSH splits the signature into `bands` bands of `rows` values, chosen
like datasketch's `_optimal_param`; two documents are candidates when they share a band key in the
same band.

Where this departs from BigCode (whose signatures it does not reproduce bit for bit, only in
distribution), for speed, measured in bench/bench_dedup.py:
- a shingle's 32-bit hash combines its tokens' 64-bit hashes (FNV-1a with murmur3's finaliser),
  computed while the text is scanned, instead of an xxh32 of the space-joined shingle;
- the permutations are Dietzfelbinger's multiply-add-shift, a 2-independent family like BigCode's
  `(a*h + b) mod (2^32 - 5)`: the shift commutes with the minimum, so a signature costs one multiply,
  one add and one comparison per shingle and permutation, and no division;
- a whole batch of documents is scanned, shingled and signed by two compiled loops (numba), after
  Arrow lowercases it.
The permutations are drawn from numpy's PCG64 seeded with `seed`. Everything is integer arithmetic,
so the output is the same on every machine.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from starbuild.utf8 import utf8_buffers

# Points per integration interval in `bands_rows`; the error is ~1e-7, far below the gap between
# the best (b, r) and the runner-up.
GRID = 4097

# Word characters, as Python's `re` defines `\w` for str patterns.
_WORD = re.compile(r"\w+")
# Odd 64-bit multipliers of a shingle's token hashes, one per position (from PCG64(0)): the combined
# hash depends on the order of the tokens, not only on which tokens they are.
_POSITION_SEED = 0
_HIGH = np.uint64(32)
_NO_MINIMUM = np.uint64(np.iinfo(np.uint64).max)
# FNV-1a 64 and murmur3's fmix64 constants, typed so numba keeps every step in uint64.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)


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


def _lowercased(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """The texts lowercased by Arrow (Unicode case mapping), a null as an empty text."""
    return pc.utf8_lower(pc.fill_null(_as_arrow(texts), ""))


def tokens(text: str) -> list[str]:
    """The lowercased text split on non-word characters, empty tokens dropped."""
    return _WORD.findall(_lowercased([text])[0].as_py())


def shingles(text: str, ngram: int, min_tokens: int) -> set[str]:
    """The set of shingles of text (tokens joined by one space); empty when it has fewer than min_tokens."""
    words = tokens(text)
    if len(words) < min_tokens:
        return set()
    if len(words) < ngram:
        # BigCode's ngrams(): a document long enough to count but shorter than one shingle is one.
        return {" ".join(words)}
    return set(map(" ".join, zip(*(words[i:] for i in range(ngram)), strict=False)))


@functools.lru_cache(maxsize=1)
def word_code_points() -> np.ndarray:
    """bool per Unicode code point: whether Python's `\\w` matches it (surrogates: no)."""
    points = np.arange(0x110000, dtype=np.uint32)
    points[0xD800:0xE000] = ord(" ")
    text = points.tobytes().decode("utf-32-le")
    # Every word character becomes U+0001, which is not one: the changed code points are the word characters.
    marked = np.frombuffer(_WORD.sub(lambda m: "\x01" * len(m.group()), text).encode("utf-32-le"), dtype=np.uint32)
    return marked != points


@functools.lru_cache(maxsize=8)
def _position_multipliers(ngram: int) -> np.ndarray:
    """One odd uint64 multiplier per shingle position."""
    rng = np.random.Generator(np.random.PCG64(_POSITION_SEED))
    return rng.integers(0, np.iinfo(np.uint64).max, size=ngram, dtype=np.uint64, endpoint=True) | np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _finish_token(state: np.uint64) -> np.uint64:
    """murmur3's fmix64 of a token's FNV-1a state: every input bit reaches every output bit."""
    state ^= state >> _SHIFT
    state *= _MIX_1
    state ^= state >> _SHIFT
    state *= _MIX_2
    state ^= state >> _SHIFT
    return state


@numba.njit(cache=True, nogil=True)
def _shingle_scan(data: np.ndarray, offsets: np.ndarray, words: np.ndarray, ngram: int, min_tokens: int,
                  multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit shingle hash) of every shingle of every UTF-8 text data[offsets[t]:offsets[t+1]]."""
    total = offsets[-1] - offsets[0]
    # Tokens are separated, so a text of n bytes has at most (n + 1) // 2 tokens, and as many shingles.
    capacity = total // 2 + offsets.size
    owners = np.empty(capacity, dtype=np.int64)
    hashes = np.empty(capacity, dtype=np.uint64)
    ring = np.zeros(max(ngram, 1), dtype=np.uint64)
    out = 0
    for text in range(offsets.size - 1):
        first_out, count, in_token, state = out, 0, False, _FNV_OFFSET
        i, end = offsets[text], offsets[text + 1]
        while i <= end:
            width, is_word = 1, False
            if i < end:
                byte = data[i]
                if byte < 0x80:
                    point = np.int64(byte)
                elif byte >= 0xF0 and i + 3 < end:
                    width = 4
                    point = ((np.int64(byte) & 7) << 18) | ((np.int64(data[i + 1]) & 63) << 12) \
                        | ((np.int64(data[i + 2]) & 63) << 6) | (np.int64(data[i + 3]) & 63)
                elif byte >= 0xE0 and i + 2 < end:
                    width = 3
                    point = ((np.int64(byte) & 15) << 12) | ((np.int64(data[i + 1]) & 63) << 6) \
                        | (np.int64(data[i + 2]) & 63)
                elif byte >= 0xC0 and i + 1 < end:
                    width = 2
                    point = ((np.int64(byte) & 31) << 6) | (np.int64(data[i + 1]) & 63)
                else:  # a stray byte: never part of a word
                    point = np.int64(0)
                is_word = words[point]
            if is_word:
                if not in_token:
                    in_token, state = True, _FNV_OFFSET
                for k in range(width):
                    state = (state ^ np.uint64(data[i + k])) * _FNV_PRIME
            elif in_token:
                in_token = False
                ring[count % ngram] = _finish_token(state)
                count += 1
                if count >= ngram:
                    combined = np.uint64(0)
                    for j in range(ngram):
                        combined += ring[(count - ngram + j) % ngram] * multipliers[j]
                    owners[out] = text
                    hashes[out] = combined
                    out += 1
            i += width
        if count < min_tokens:
            out = first_out
        elif count < ngram:
            # BigCode's ngrams(): at least min_tokens but fewer than ngram tokens make one shingle of them all.
            combined = np.uint64(0)
            for j in range(count):
                combined += ring[j] * multipliers[j]
            owners[out] = text
            hashes[out] = combined
            out += 1
    return owners[:out], hashes[:out]


def shingle_table(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray, ngram: int,
                  min_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(text index int64, shingle hash uint32) of every distinct shingle of every text, sorted by both.

    A text with fewer than `min_tokens` tokens has no row; one with at least `min_tokens` but fewer
    than `ngram` has one shingle of all its tokens (BigCode's ngrams()).
    """
    data, offsets = utf8_buffers(_lowercased(texts))
    owners, combined = _shingle_scan(data, offsets, word_code_points(), ngram, min_tokens,
                                     _position_multipliers(ngram))
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


@numba.njit(cache=True, nogil=True)
def _minimum_scan(owners: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray,
                  best: np.ndarray) -> None:
    """best[owner, i] = min over the owner's shingles h of a[i] * h + b[i] (mod 2^64)."""
    for row in range(hashes.size):
        h = np.uint64(hashes[row])
        minimum = best[owners[row]]
        for i in range(a.size):
            value = a[i] * h + b[i]
            if value < minimum[i]:
                minimum[i] = value


def signature_matrix(owners: np.ndarray, hashes: np.ndarray, count: int, a: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
    """Row t: the signature of text t from the (owner, hash) rows of `shingle_table`, uint32 (count, num_perm).

    A text without shingles gets a row of 0xFFFFFFFF.
    """
    hashes = np.asarray(hashes)
    if hashes.dtype != np.uint32 or hashes.ndim != 1:
        raise ValueError(f"shingle hashes must be a uint32 vector, got {hashes.dtype} {hashes.shape}")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be equal-length vectors, got shapes {a.shape} and {b.shape}")
    best = np.full((count, a.size), _NO_MINIMUM, dtype=np.uint64)
    _minimum_scan(np.asarray(owners, dtype=np.int64), hashes, a.astype(np.uint64), b.astype(np.uint64), best)
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
