"""Per-file character and line counts, all from one compiled pass over the UTF-8 bytes, and the first lines.

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

from starbuild.utf8 import utf8_buffers

_ALPHA, _ALNUM = np.uint8(1), np.uint8(2)
# The column of HeadLines.
HEAD = "head"
# The columns of `text_stats`, in the order the kernel fills them.
COLUMNS = ("n_chars", "n_lines", "max_line_length", "alpha_chars", "alnum_chars")


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """uint8 per code point: bit 0 `str.isalpha`, bit 1 `str.isalnum` (surrogates: neither)."""
    points = np.arange(0x110000, dtype=np.uint32).view("<U1")
    return np.strings.isalpha(points).astype(np.uint8) * _ALPHA | np.strings.isalnum(points).astype(np.uint8) * _ALNUM


@numba.njit(cache=True, nogil=True)
def _count(data: np.ndarray, offsets: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """COLUMNS of each text data[offsets[t]:offsets[t+1]] (valid UTF-8 assumed), one row per text."""
    out = np.zeros((offsets.size - 1, len(COLUMNS)), dtype=np.int64)
    for text in range(offsets.size - 1):
        i, end = offsets[text], offsets[text + 1]
        chars = newlines = line_start = longest = alpha = alnum = 0
        while i < end:
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


def text_stats(texts: pa.ChunkedArray) -> dict[str, pa.Array]:
    """COLUMNS of each text (a null counts as ''): code points, lines, the longest line, `str.isalpha` and
    `str.isalnum` characters."""
    data, offsets = utf8_buffers(texts)
    counts = _count(data, offsets, code_point_classes())
    return {name: pa.array(counts[:, k]) for k, name in enumerate(COLUMNS)}


@numba.njit(cache=True, nogil=True)
def _heads(data: np.ndarray, offsets: np.ndarray, lines: int) -> tuple[np.ndarray, np.ndarray]:
    """The bytes and offsets of each text's first `lines` lines, with the newlines between them."""
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
    head_offsets = np.zeros(n + 1, dtype=np.int64)
    for text in range(n):
        head_offsets[text + 1] = head_offsets[text] + ends[text] - offsets[text]
    heads = np.empty(head_offsets[n], dtype=np.uint8)
    for text in range(n):
        heads[head_offsets[text]:head_offsets[text + 1]] = data[offsets[text]:ends[text]]
    return heads, head_offsets


@dataclass(frozen=True)
class HeadLines:
    """The first `lines` lines of each text with the newlines between them ('' for a null), as column HEAD."""

    lines: int

    def __call__(self, texts: pa.ChunkedArray) -> dict[str, pa.Array]:
        data, offsets = utf8_buffers(texts)
        heads, head_offsets = _heads(data, offsets, self.lines)
        array = pa.LargeStringArray.from_buffers(len(head_offsets) - 1, pa.py_buffer(head_offsets), pa.py_buffer(heads))
        return {HEAD: array}
