r"""File-level filter rules in DuckDB SQL: the Stack v2 basic filters (StarCoder2 §2.1).

A rule is one frozen dataclass: its fields are its thresholds (the keys of its conf/filter/ entry),
`features()` the per-file SQL values it reads, `predicate()` the SQL that is true when a file is
dropped. Thresholds reach the SQL as bound parameters: `$name` in a predicate is the field `name`.

Features read `text` (`content`, NULL as ''), `language` and the features they need. Lines are the
pieces of `text` split on '\n' (a trailing newline adds an empty last line, '\r' is a character);
lengths are Unicode code points. "Alphabetic" is the Unicode letter class `\p{L}`, what Python's
`str.isalpha` tests; `\p{L}\p{N}` is `str.isalnum`. RE2 ships a newer Unicode table than Python 3.11
(14.0), so letters assigned after 14.0 count here and not in Python; every code point assigned in
14.0 agrees.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Feature:
    """A named per-file SQL value; `sql` may read `text`, `language`, `needs` and `$param` of `params`."""

    name: str
    sql: str
    needs: tuple[Feature, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


LINE_LENGTHS = Feature("line_lengths", "list_transform(string_split(text, chr(10)), lambda line: length(line))")
N_LINES = Feature("n_lines", "len(line_lengths)", needs=(LINE_LENGTHS,))
MAX_LINE_LENGTH = Feature("max_line_length", "list_max(line_lengths)", needs=(LINE_LENGTHS,))
AVG_LINE_LENGTH = Feature("avg_line_length", "list_sum(line_lengths) / len(line_lengths)", needs=(LINE_LENGTHS,))
N_CHARS = Feature("n_chars", "length(text)")


def letter_chars(alnum_languages: Sequence[str]) -> Feature:
    """Letters in the file; digits count too for `alnum_languages`."""
    # One regex pass per file: the branch is chosen per row, so only one pattern runs on each text.
    sql = r"""CASE WHEN coalesce(list_contains($alnum_languages, language), false)
        THEN length(regexp_replace(text, '[^\p{L}\p{N}]', '', 'g'))
        ELSE length(regexp_replace(text, '[^\p{L}]', '', 'g'))
    END"""
    return Feature("letter_chars", sql, params={"alnum_languages": tuple(alnum_languages)})


class BadThreshold(ValueError):
    """A threshold out of range or of the wrong type; `key` names the rule's field."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


class Rule(ABC):
    """One filter rule; subclasses are frozen dataclasses whose fields are the thresholds."""

    @abstractmethod
    def features(self) -> tuple[Feature, ...]:
        """The features `predicate` reads (their own needs are added by the query)."""

    @abstractmethod
    def predicate(self) -> str:
        """SQL over the features and `$field` thresholds: true drops the file, NULL keeps it."""

    def params(self) -> dict[str, Any]:
        """The thresholds by field name, for `$field` in `predicate`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # Checks for __post_init__: each normalises the field's type so the bound SQL parameter's is fixed.

    def _check_int(self, key: str, minimum: int = 1) -> None:
        value = getattr(self, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadThreshold(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise BadThreshold(key, f"must be >= {minimum}, got {value}")

    def _check_float(self, key: str, low: float, high: float | None = None) -> None:
        value = getattr(self, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadThreshold(key, f"must be a number, got {value!r}")
        if high is None and value <= low:
            raise BadThreshold(key, f"must be > {low:g}, got {value}")
        if high is not None and not low <= value <= high:
            raise BadThreshold(key, f"must be within [{low:g}, {high:g}], got {value}")
        object.__setattr__(self, key, float(value))

    def _check_names(self, key: str) -> None:
        value = getattr(self, key)
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise BadThreshold(key, f"must be a list of language names, got {value!r}")
        object.__setattr__(self, key, tuple(value))


@dataclass(frozen=True)
class MaxLines(Rule):
    """More than `max_lines` lines."""

    max_lines: int

    def __post_init__(self) -> None:
        self._check_int("max_lines")

    def features(self) -> tuple[Feature, ...]:
        return (N_LINES,)

    def predicate(self) -> str:
        return "n_lines > $max_lines"


@dataclass(frozen=True)
class LongLines(Rule):
    """Average line longer than `max_avg_line_length` or any line longer than `max_line_length`.

    Files in `exempt_languages` (data and markup) are judged only by `exempt_max_line_length`.
    """

    max_avg_line_length: float
    max_line_length: int
    exempt_languages: tuple[str, ...]
    exempt_max_line_length: int

    def __post_init__(self) -> None:
        self._check_float("max_avg_line_length", 0.0)
        self._check_int("max_line_length")
        self._check_names("exempt_languages")
        self._check_int("exempt_max_line_length")

    def features(self) -> tuple[Feature, ...]:
        return (MAX_LINE_LENGTH, AVG_LINE_LENGTH)

    def predicate(self) -> str:
        return """CASE WHEN coalesce(list_contains($exempt_languages, language), false)
            THEN max_line_length > $exempt_max_line_length
            ELSE avg_line_length > $max_avg_line_length OR max_line_length > $max_line_length
        END"""


@dataclass(frozen=True)
class LowAlpha(Rule):
    """Fewer than `min_alpha_fraction` of the characters alphabetic (alphanumeric for `alnum_languages`).

    An empty file has no alphabetic characters and is dropped.
    """

    min_alpha_fraction: float
    alnum_languages: tuple[str, ...]

    def __post_init__(self) -> None:
        self._check_float("min_alpha_fraction", 0.0, 1.0)
        self._check_names("alnum_languages")

    def features(self) -> tuple[Feature, ...]:
        return (N_CHARS, letter_chars(self.alnum_languages))

    def predicate(self) -> str:
        return "n_chars = 0 OR letter_chars / n_chars < $min_alpha_fraction"
