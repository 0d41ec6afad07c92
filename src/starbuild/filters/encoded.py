r"""The encoded-data rule's matches: the longest match and all matched characters of each file.

Patterns are RE2's, run by Google's RE2 (`google-re2`): leftmost-first, non-overlapping, pattern by
pattern, lengths in code points. One pass of RE2 over every file costs more than all the other rules
together, and almost no file matches, so for The Stack v2's three patterns a compiled scan first
finds the runs of bytes every match must lie in (`KNOWN_RUNS`, each with its proof):

* base64, `[a-zA-Z0-9+/\n=]{64,}`: the pattern is one ASCII class repeated, so its matches are
  exactly the maximal runs of that class 64 or more bytes long; the scan gives their lengths and
  RE2 never runs;
* hex bytes, `(?:\b(?:0x|\\x)?[0-9a-fA-F]{2}(?:,|\b\s*)){8,}`: a match is made of hex digits, `x`,
  `\`, `,` and RE2's `\s` ([\t\n\f\r ]), at least 23 long, with 16 hex digits or more. Its word
  characters come in 8 or more tokens (`HH`, `0xHH` or `xHH`: 2 to 4 long), each a whole word of the
  text, since `\b` or `,` ends a unit and `\b` or `\` starts one, and between two tokens there is
  at least one of `,`, `\` or `\s`. So it lies in a run of those bytes that holds 8 such tokens in a row;
* unicode escapes, `(?:\\u[0-9a-fA-F]{4}){8,}`: a match is made of `\`, `u` and hex digits and is
  at least 48 long, so it lies in a run of those at least 48 long.

RE2 then runs only on those runs, reading the bytes around each for `\b` (RE2 takes the whole text as a
match's context). Any other pattern runs in RE2 on every file.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import re2

from starbuild.utf8 import utf8_buffers

# The columns of EncodedScan.
LONGEST, MATCHED = "longest_match", "matched_chars"


@dataclass(frozen=True)
class Runs:
    """Where every match of a pattern lies: in a maximal run of `members` bytes holding at least `min_count`
    `counted` bytes (a subset of `members`); `exact` when those runs are the pattern's matches."""

    members: str
    counted: str
    min_count: int
    min_length: int
    exact: bool = False
    # Also needs this many word tokens 2 to 4 long in a row, with only non-word members between them.
    min_tokens: int = 0

    def __post_init__(self) -> None:
        # A match of ASCII bytes is as many code points long as bytes: _match_runs counts bytes.
        if not self.members.isascii():
            raise ValueError(f"run members must be ASCII, got {self.members!r}")


_HEX = string.digits + "abcdefABCDEF"
_BASE64 = string.ascii_letters + string.digits + "+/\n="
KNOWN_RUNS: dict[str, Runs] = {
    r"[a-zA-Z0-9+/\n=]{64,}": Runs(_BASE64, _BASE64, 64, 64, exact=True),
    r"(?:\b(?:0x|\\x)?[0-9a-fA-F]{2}(?:,|\b\s*)){8,}": Runs(_HEX + "x\\,\t\n\f\r ", _HEX, 16, 23, min_tokens=8),
    r"(?:\\u[0-9a-fA-F]{4}){8,}": Runs(_HEX + "\\u", _HEX + "\\u", 48, 48),
}


@functools.lru_cache(maxsize=16)
def _byte_table(chars: str) -> np.ndarray:
    """bool per byte value: whether it is one of `chars` (ASCII); built once per set (read only)."""
    table = np.zeros(256, dtype=np.bool_)
    table[[ord(c) for c in chars]] = True
    return table


# RE2's word characters (\w: ASCII letters, digits and _).
_WORDS = _byte_table(string.ascii_letters + string.digits + "_")


@numba.njit(cache=True, nogil=True)
def _token_streak(data: np.ndarray, start: int, end: int, words: np.ndarray) -> int:
    """The most word tokens 2 to 4 bytes long in a row in data[start:end] (no other word between them)."""
    best = streak = length = 0
    for i in range(start, end + 1):
        if i < end and words[data[i]]:
            length += 1
            continue
        if length:
            streak = streak + 1 if 2 <= length <= 4 else 0
            best = max(best, streak)
            length = 0
    return best


@numba.njit(inline="always")
def _next_run(data: np.ndarray, i: int, end: int, members: np.ndarray, counted: np.ndarray, min_count: int,
              min_length: int, words: np.ndarray, min_tokens: int) -> tuple[int, int]:
    """The first maximal `members` run in data[i:end] at least `min_length` long holding >= `min_count` `counted`
    bytes and `min_tokens` `words` tokens in a row (see _token_streak), as (start, stop); (end, end) if none."""
    # A run that can hold a match is at least min_length long: look at the last byte of each window of that
    # length first, so a text of short runs is read a fraction of a byte at a time.
    while i + min_length <= end:
        k = i + min_length - 1
        while k >= i and members[data[k]]:
            k -= 1
        if k >= i:  # data[k] is no member: no such run starts before k + 1
            i = k + 1
            continue
        # data[i] starts a run (data[i - 1] is no member, or the text starts at i).
        j = i + min_length
        while j < end and members[data[j]]:
            j += 1
        found = 0
        for m in range(i, j):
            found += counted[data[m]]
        if found >= min_count and (min_tokens == 0 or _token_streak(data, i, j, words) >= min_tokens):
            return i, j
        i = j + 1
    return end, end


@numba.njit(cache=True, nogil=True)
def _scan_runs(data: np.ndarray, offsets: np.ndarray, members: np.ndarray, counted: np.ndarray, min_count: int,
               min_length: int, words: np.ndarray, min_tokens: int, first_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the longest and the summed length of its runs (see _next_run); with `first_only`, a text
    stops at its first run."""
    n = offsets.size - 1
    longest = np.zeros(n, dtype=np.int64)
    total = np.zeros(n, dtype=np.int64)
    for text in range(n):
        i, end = offsets[text], offsets[text + 1]
        while i < end:
            start, stop = _next_run(data, i, end, members, counted, min_count, min_length, words, min_tokens)
            if start == end:
                break
            longest[text] = max(longest[text], stop - start)
            total[text] += stop - start
            if first_only:
                break
            i = stop + 1
    return longest, total


@numba.njit(cache=True, nogil=True)
def _text_runs(data: np.ndarray, begin: int, end: int, members: np.ndarray, counted: np.ndarray, min_count: int,
               min_length: int, words: np.ndarray, min_tokens: int) -> np.ndarray:
    """The (start, stop) of every run in data[begin:end] (see _next_run), in order."""
    runs = np.empty((16, 2), dtype=np.int64)
    count, i = 0, begin
    while i < end:
        start, stop = _next_run(data, i, end, members, counted, min_count, min_length, words, min_tokens)
        if start == end:
            break
        if count == runs.shape[0]:
            grown = np.empty((2 * count, 2), dtype=np.int64)
            grown[:count] = runs
            runs = grown
        runs[count, 0], runs[count, 1] = start, stop
        count += 1
        i = stop + 1
    return runs[:count]


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> re2._Regexp:
    """`pattern` compiled by RE2 (re2.error when it is not an RE2 pattern; nothing logged)."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


@dataclass(frozen=True)
class EncodedScan:
    """For each file, LONGEST (0 when none) and MATCHED over every match of every one of `patterns`."""

    patterns: tuple[str, ...]

    def __call__(self, texts: pa.ChunkedArray) -> dict[str, pa.Array]:
        data, offsets = utf8_buffers(texts)
        longest = np.zeros(offsets.size - 1, dtype=np.int64)
        total = np.zeros(offsets.size - 1, dtype=np.int64)
        for pattern in self.patterns:
            runs = KNOWN_RUNS.get(pattern)
            if runs is None:
                _match_texts(compile_pattern(pattern), texts, offsets, longest, total)
                continue
            args = (_byte_table(runs.members), _byte_table(runs.counted), runs.min_count, runs.min_length, _WORDS,
                    runs.min_tokens)
            found, summed = _scan_runs(data, offsets, *args, not runs.exact)
            if runs.exact:
                np.maximum(longest, found, out=longest)
                total += summed
                continue
            regex = compile_pattern(pattern)
            for row in np.flatnonzero(found).tolist():
                begin, end = offsets[row], offsets[row + 1]
                in_text = _text_runs(data, begin, end, *args) - begin
                _match_runs(regex, data[begin:end], in_text, row, longest, total)
        return {LONGEST: pa.array(longest), MATCHED: pa.array(total)}


def _match_texts(regex: re2._Regexp, texts: pa.ChunkedArray, offsets: np.ndarray, longest: np.ndarray,
                 total: np.ndarray) -> None:
    """RE2's matches in every non-empty text, lengths in code points."""
    rows = np.flatnonzero(offsets[1:] > offsets[:-1])
    for row, text in zip(rows, texts.take(pa.array(rows, pa.int64())).to_pylist(), strict=True):
        for match in regex.finditer(text):
            size = len(match.group())
            longest[row] = max(longest[row], size)
            total[row] += size


def _match_runs(regex: re2._Regexp, text: np.ndarray, runs: np.ndarray, row: int, longest: np.ndarray,
                total: np.ndarray) -> None:
    """RE2's matches within each of `runs` (start, stop) of `text`: no match crosses a run's ends, so these are
    the text's matches. RE2 reads the bytes around a run for `\b`; a KNOWN_RUNS match is ASCII, so its bytes are
    its code points."""
    for start, stop in runs.tolist():
        for match in regex.finditer(text, start, stop):
            size = match.end() - match.start()
            longest[row] = max(longest[row], size)
            total[row] += size
