"""Per-file character and line counts, all from one compiled pass over the UTF-8 bytes, and phrases in the first lines.

Lengths are Unicode code points; lines are the pieces of the text split on '\\n' (a trailing newline
adds an empty last line, '\\r' is a character). "Alphabetic" is Python's `str.isalpha` and
"alphanumeric" its `str.isalnum` (what BigCode's filters ran), read from Python's Unicode database
into a table of every code point, so the counts agree with Python character for character. DuckDB
computed the same with `string_split` and a regex replace several times slower.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa

from starbuild.filters import encoded
from starbuild.utf8 import utf8_buffers

_ALPHA, _ALNUM = np.uint8(1), np.uint8(2)
# The column of HeadMatches.
HEAD_MATCH = "head_match"
# The columns of `text_stats`, in the order the kernel fills them.
COLUMNS = ("n_chars", "n_lines", "max_line_length", "alpha_chars", "alnum_chars")


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """uint8 per code point: bit 0 `str.isalpha`, bit 1 `str.isalnum` (surrogates: neither)."""
    points = np.arange(0x110000, dtype=np.uint32).view("<U1")
    return np.strings.isalpha(points).astype(np.uint8) * _ALPHA | np.strings.isalnum(points).astype(np.uint8) * _ALNUM


# Eight bytes at a time (SWAR): ASCII text is most code, and in ASCII isalpha is [A-Za-z] and isalnum adds
# [0-9], so a word of eight ASCII bytes is counted with a few additions and two bit counts.
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)
_CASE = np.uint64(0x2020202020202020)


@numba.njit(inline="always")
def _bytes_at_least(word: np.uint64, low: int) -> np.uint64:
    """The high bit of each byte of an all-ASCII `word` that is >= low (adding 0x80 - low cannot carry out)."""
    return (word + np.uint64(0x80 - low) * _ONES) & _HIGH


@numba.njit(inline="always")
def _count_high_bits(mask: np.uint64) -> int:
    """How many bytes of `mask` have their high bit set (no other bit is)."""
    return np.int64(((mask >> np.uint64(7)) * _ONES) >> np.uint64(56))


# de Bruijn: the index of the lowest set bit of a 64-bit word, from the top 6 bits of its product.
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_OF = np.zeros(64, dtype=np.int64)
_BIT_OF[[((1 << bit) * int(_DE_BRUIJN) % (1 << 64)) >> 58 for bit in range(64)]] = np.arange(64)


@numba.njit(inline="always")
def _lowest_byte(mask: np.uint64) -> int:
    """The index of the lowest byte whose high bit is set in `mask` (not 0)."""
    lowest = mask & (~mask + np.uint64(1))
    return _BIT_OF[(lowest * _DE_BRUIJN) >> np.uint64(58)] >> 3


@numba.njit(cache=True, nogil=True)
def _count(data: np.ndarray, words: np.ndarray, offsets: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """COLUMNS of each text data[offsets[t]:offsets[t+1]] (valid UTF-8 assumed), one row per text; `words` is
    `data` read as uint64 (8-byte aligned), for the aligned all-ASCII stretches."""
    out = np.zeros((offsets.size - 1, len(COLUMNS)), dtype=np.int64)
    for text in range(offsets.size - 1):
        i, end = offsets[text], offsets[text + 1]
        chars = newlines = line_start = longest = alpha = alnum = 0
        while i < end:
            if (i & 7) == 0:
                while i + 8 <= end:  # aligned all-ASCII words
                    word = words[i >> 3]
                    if (word & _HIGH) != 0:
                        break
                    lower = word | _CASE  # A-Z to a-z; no other byte lands in a-z
                    letters = _bytes_at_least(lower, 0x61) & ~_bytes_at_least(lower, 0x7B)
                    digits = _bytes_at_least(word, 0x30) & ~_bytes_at_least(word, 0x3A)
                    alpha += _count_high_bits(letters)
                    alnum += _count_high_bits(letters | digits)
                    # The high bit of each byte equal to '\n' (exact: no carry crosses a byte).
                    other = word ^ _NEWLINES
                    breaks = ~(((other & _LOW7) + _LOW7) | other | _LOW7)
                    while breaks != 0:
                        at = chars + _lowest_byte(breaks)
                        longest = max(longest, at - line_start)
                        line_start = at + 1
                        newlines += 1
                        breaks &= breaks - np.uint64(1)
                    chars += 8
                    i += 8
                if i >= end:
                    break
            byte = np.int64(data[i])
            if byte < 0x80:
                point, width = byte, 1
                if byte == 10:
                    longest = max(longest, chars - line_start)
                    line_start = chars + 1
                    newlines += 1
            elif byte >= 0xF0:
                point = ((byte & 7) << 18) | ((np.int64(data[i + 1]) & 63) << 12) \
                    | ((np.int64(data[i + 2]) & 63) << 6) | (np.int64(data[i + 3]) & 63)
                width = 4
            elif byte >= 0xE0:
                point = ((byte & 15) << 12) | ((np.int64(data[i + 1]) & 63) << 6) | (np.int64(data[i + 2]) & 63)
                width = 3
            else:
                point, width = ((byte & 31) << 6) | (np.int64(data[i + 1]) & 63), 2
            cls = classes[point]
            alpha += cls & 1
            alnum += (cls >> 1) & 1
            chars += 1
            i += width
        out[text, 0] = chars
        out[text, 1] = newlines + 1
        out[text, 2] = max(longest, chars - line_start)
        out[text, 3] = alpha
        out[text, 4] = alnum
    return out


def _as_words(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`data` at an 8-byte-aligned address (Arrow's buffers are; copied otherwise) and its whole words,
    little-endian, so the word's first byte is its lowest."""
    if data.ctypes.data % 8:
        spare = np.empty(data.size + 8, dtype=np.uint8)
        start = -spare.ctypes.data % 8
        spare[start:start + data.size] = data
        data = spare[start:start + data.size]
    return data, data[:data.size - data.size % 8].view("<u8")


def text_stats(texts: pa.ChunkedArray) -> dict[str, pa.Array]:
    """COLUMNS of each text (a null counts as ''): code points, lines, the longest line, `str.isalpha` and
    `str.isalnum` characters."""
    data, offsets = utf8_buffers(texts)
    data, words = _as_words(data)
    counts = _count(data, words, offsets, code_point_classes())
    return {name: pa.array(counts[:, k]) for k, name in enumerate(COLUMNS)}


@numba.njit(cache=True, nogil=True)
def _joined_heads(data: np.ndarray, offsets: np.ndarray, lines: int, separator: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text's first `lines` lines (with the newlines between them), one after another, each followed by
    `separator`; and where each starts."""
    n = offsets.size - 1
    ends = np.empty(n, dtype=np.int64)
    for text in range(n):
        i, end, seen = offsets[text], offsets[text + 1], 0
        while i < end:
            if data[i] == 10:
                seen += 1
                if seen == lines:
                    break
            i += 1
        ends[text] = i
    starts = np.zeros(n + 1, dtype=np.int64)
    for text in range(n):
        starts[text + 1] = starts[text] + ends[text] - offsets[text] + 1
    joined = np.empty(starts[n], dtype=np.uint8)
    for text in range(n):
        joined[starts[text]:starts[text + 1] - 1] = data[offsets[text]:ends[text]]
        joined[starts[text + 1] - 1] = separator
    return joined, starts[:n]


# Never in UTF-8 text nor in a match of a UTF-8 pattern of literals: no match crosses from one head to the next.
_HEAD_SEPARATOR = 0xFF


@dataclass(frozen=True)
class HeadMatches:
    """Whether RE2's `pattern` (literal phrases, see rules.literal_pattern) is found in each text's first `lines`
    lines, as column HEAD_MATCH: one RE2 search over all the heads, rather than a regex call per file."""

    lines: int
    pattern: str

    def __call__(self, texts: pa.ChunkedArray) -> dict[str, pa.Array]:
        data, offsets = utf8_buffers(texts)
        joined, starts = _joined_heads(data, offsets, self.lines, _HEAD_SEPARATOR)
        regex = encoded.compile_pattern(self.pattern)
        found = np.zeros(len(starts), dtype=bool)
        match = regex.search(joined) if len(starts) else None
        while match is not None:
            row = int(np.searchsorted(starts, match.start(), side="right")) - 1
            found[row] = True
            # The rest of this head cannot change its verdict.
            match = regex.search(joined, int(starts[row + 1])) if row + 1 < len(starts) else None
        return {HEAD_MATCH: pa.array(found)}
