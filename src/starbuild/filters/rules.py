r"""File-level filter rules in DuckDB SQL: The Stack v2's file filters (StarCoder2 §2.1).

A rule is one frozen dataclass: its fields are its thresholds (the keys of its conf/filter/ entry),
`features()` the per-file SQL values it reads, `predicate()` the SQL that is true when a file is
dropped. Thresholds reach the SQL as literals: `$name` in a predicate is the value of the field `name`.

Features read `text` (`content`, NULL as ''), `language`, `path`, `is_generated`, `is_vendor`,
`license_type` and the features they need. Lines are the pieces of `text` split on '\n' (a trailing
newline adds an empty last line, '\r' is a character); lengths are Unicode code points.
"Alphabetic" is Python's `str.isalpha` and "alphanumeric" its `str.isalnum`. Line and character
counts come from one compiled pass (filters/text_stats.py), the encoded-data matches from RE2 behind
a compiled prefilter (filters/encoded.py). Patterns are RE2's: `\b`, `\w` and `\s` are ASCII classes
(`\s` is [\t\n\f\r ]), and `(?i)` folds case by Unicode simple case folding.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import re2

from starbuild.filters import encoded, html, text_stats


@dataclass(frozen=True)
class Native:
    """`column` of what `scan` computes in Python from the shard's columns `reads` (one value per row each);
    features with equal scans share one call."""

    scan: Callable[..., Mapping[str, pa.Array]]
    column: str
    reads: tuple[str, ...] = ("content",)


@dataclass(frozen=True)
class Feature:
    """A named per-file value: `sql` may read the base columns, `needs` and `$param` of `params`; or, where
    SQL is slow, `native` computes it in Python from the shard's columns."""

    name: str
    sql: str = ""
    needs: tuple[Feature, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    native: Native | None = None


def _text_stat(name: str) -> Feature:
    return Feature(name, native=Native(text_stats.text_stats, name))


N_CHARS = _text_stat("n_chars")
N_LINES = _text_stat("n_lines")
MAX_LINE_LENGTH = _text_stat("max_line_length")
# The lines' lengths add up to the characters other than the newlines between them.
AVG_LINE_LENGTH = Feature("avg_line_length", "(n_chars - (n_lines - 1)) / n_lines", needs=(N_CHARS, N_LINES))
# The last path segment, and its extension and stem as Python's os.path.splitext cuts them (a name's
# leading dots never start an extension: '.bashrc' has none). String functions, not regexes: a capturing
# regex per file cost more than every other SQL feature together.
FILE_NAME = Feature("file_name", "split_part(coalesce(path, ''), '/', -1)")
FILE_EXTENSION = Feature("file_extension",
                         "CASE WHEN contains(ltrim(file_name, '.'), '.') THEN '.' || split_part(file_name, '.', -1) "
                         "ELSE '' END", needs=(FILE_NAME,))
FILE_STEM = Feature("file_stem", "left(file_name, length(file_name) - length(file_extension))",
                    needs=(FILE_NAME, FILE_EXTENSION))


def head_match(lines: int, pattern: str) -> Feature:
    """Whether RE2's `pattern` is found in the first `lines` lines of the file."""
    return Feature(text_stats.HEAD_MATCH, native=Native(text_stats.HeadMatches(lines, pattern), text_stats.HEAD_MATCH))


def encoded_matches(patterns: Sequence[str]) -> tuple[Feature, Feature]:
    """The longest match (0 when none) and all matched characters, over every match of every pattern
    (leftmost-first, non-overlapping, pattern by pattern): see filters/encoded.py."""
    scan = encoded.EncodedScan(tuple(patterns))
    return Feature(encoded.LONGEST, native=Native(scan, encoded.LONGEST)), \
        Feature(encoded.MATCHED, native=Native(scan, encoded.MATCHED))


def html_text_chars(languages: Sequence[str]) -> Feature:
    """Code points of the visible text of files in `languages` (NULL for others): see filters/html.py."""
    return Feature(html.COLUMN, native=Native(html.HtmlScan(tuple(languages)), html.COLUMN, ("content", "language")))


def literal_pattern(words: Sequence[str], whole: bool = False) -> str:
    """An RE2 (and Python re) pattern matching any of `words` literally, in any case; `whole` anchors it."""
    escaped = ["".join(f"\\{c}" if c.isascii() and not c.isalnum() and c not in " _" else c for c in w)
               for w in words]
    body = "|".join(escaped)
    return f"(?i)^(?:{body})$" if whole else f"(?i){body}"


ALPHA_CHARS = _text_stat("alpha_chars")
ALNUM_CHARS = _text_stat("alnum_chars")


def letter_chars(alnum_languages: Sequence[str]) -> Feature:
    """Letters in the file (`str.isalpha`); for `alnum_languages`, letters and digits (`str.isalnum`)."""
    sql = "CASE WHEN coalesce(list_contains($alnum_languages, language), false) THEN alnum_chars ELSE alpha_chars END"
    return Feature("letter_chars", sql, needs=(ALPHA_CHARS, ALNUM_CHARS),
                   params={"alnum_languages": tuple(alnum_languages)})


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

    def with_root(self, root: Path) -> Rule:
        """This rule with the data files it names read, relative to the repository `root`."""
        return self

    # Checks for __post_init__: each normalises the field's type so its SQL literal's type is fixed.

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

    def _check_names(self, key: str, what: str = "language names") -> None:
        value = getattr(self, key)
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise BadThreshold(key, f"must be a list of {what}, got {value!r}")
        object.__setattr__(self, key, tuple(value))

    def _check_bool(self, key: str) -> None:
        if not isinstance(getattr(self, key), bool):
            raise BadThreshold(key, f"must be true or false, got {getattr(self, key)!r}")

    def _check_patterns(self, key: str) -> None:
        """Every entry of `key` compiles as an RE2 pattern."""
        self._check_names(key, "RE2 patterns")
        for pattern in getattr(self, key):
            try:
                encoded.compile_pattern(pattern)
            except re2.error as err:
                reason = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
                raise BadThreshold(key, f"has {pattern!r}, which is not an RE2 pattern ({reason})") from err


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


@dataclass(frozen=True)
class AutoGenerated(Rule):
    """Generated code: go-enry's `is_generated` (when `use_enry`), or one of `phrases` in the first
    `head_lines` lines, in any case ("Auto-generated by protoc" is caught by "auto-generated")."""

    phrases: tuple[str, ...]
    head_lines: int
    use_enry: bool = True

    def __post_init__(self) -> None:
        self._check_names("phrases", "phrases")
        if "" in self.phrases:
            raise BadThreshold("phrases", "has an empty phrase, which every file contains")
        self._check_int("head_lines")
        self._check_bool("use_enry")

    def features(self) -> tuple[Feature, ...]:
        return (head_match(self.head_lines, literal_pattern(self.phrases)),) if self.phrases else ()

    def params(self) -> dict[str, Any]:
        return {"use_enry": self.use_enry}

    def predicate(self) -> str:
        enry = "($use_enry AND coalesce(is_generated, false))"
        return f"{enry} OR {text_stats.HEAD_MATCH}" if self.phrases else enry


@dataclass(frozen=True)
class EncodedData(Rule):
    """Inline encoded data (base64, hex arrays, unicode escapes): one match of any of `patterns` longer than
    `max_match_length`, or all their matches together more than `max_matched_fraction` of the file."""

    patterns: tuple[str, ...]
    max_match_length: int
    max_matched_fraction: float

    def __post_init__(self) -> None:
        self._check_patterns("patterns")
        self._check_int("max_match_length")
        self._check_float("max_matched_fraction", 0.0, 1.0)

    def features(self) -> tuple[Feature, ...]:
        return (N_CHARS, *encoded_matches(self.patterns))

    def predicate(self) -> str:
        return f"""{encoded.LONGEST} > $max_match_length
            OR (n_chars > 0 AND {encoded.MATCHED} / n_chars > $max_matched_fraction)"""


@dataclass(frozen=True)
class LanguageMaxLines(Rule):
    """Files in `languages` (data formats) with more than `max_lines` lines."""

    languages: tuple[str, ...]
    max_lines: int

    def __post_init__(self) -> None:
        self._check_names("languages")
        self._check_int("max_lines")

    def features(self) -> tuple[Feature, ...]:
        return (N_LINES,)

    def predicate(self) -> str:
        return "coalesce(list_contains($languages, language), false) AND n_lines > $max_lines"


@dataclass(frozen=True)
class HtmlVisibleText(Rule):
    """Files in `languages` (HTML) whose visible text is under `min_text_chars` code points or under
    `min_text_fraction` of the file: pages that are mostly markup, scripts or styles."""

    languages: tuple[str, ...]
    min_text_chars: int
    min_text_fraction: float

    def __post_init__(self) -> None:
        self._check_names("languages")
        self._check_int("min_text_chars", minimum=0)
        self._check_float("min_text_fraction", 0.0, 1.0)

    def features(self) -> tuple[Feature, ...]:
        return (N_CHARS, html_text_chars(self.languages))

    def predicate(self) -> str:
        return """html_text_chars IS NOT NULL AND (n_chars = 0 OR html_text_chars < $min_text_chars
            OR html_text_chars / n_chars < $min_text_fraction)"""


@dataclass(frozen=True)
class FileNames(Rule):
    """Files in `languages` (Text) whose name is none of the allowed: the name without its extension is one of
    `stems`, or the name contains one of `name_contains` (both in any case)."""

    languages: tuple[str, ...]
    stems: tuple[str, ...]
    name_contains: tuple[str, ...]

    def __post_init__(self) -> None:
        self._check_names("languages")
        self._check_names("stems", "file names")
        self._check_names("name_contains", "name parts")

    def features(self) -> tuple[Feature, ...]:
        return (FILE_NAME, FILE_STEM)

    def params(self) -> dict[str, Any]:
        return {"languages": self.languages, "stems": literal_pattern(self.stems, whole=True),
                "contains": literal_pattern(self.name_contains)}

    def predicate(self) -> str:
        allowed = [test for test, words in (("regexp_matches(file_stem, $stems)", self.stems),
                                             ("regexp_matches(file_name, $contains)", self.name_contains)) if words]
        named = f"NOT ({' OR '.join(allowed)})" if allowed else "true"
        return f"coalesce(list_contains($languages, language), false) AND {named}"


@dataclass(frozen=True)
class LicenseTypes(Rule):
    """A `license_type` not in `keep` (The Stack v2 kept permissive and no_license; v1 permissive only)."""

    keep: tuple[str, ...]

    def __post_init__(self) -> None:
        self._check_names("keep", "license types")

    def features(self) -> tuple[Feature, ...]:
        return ()

    def predicate(self) -> str:
        return "NOT coalesce(list_contains($keep, license_type), false)"


ALL_LANGUAGES = "all"


@dataclass(frozen=True)
class Languages(Rule):
    """A language not in `keep` (go-enry's names; a file without one is dropped); `keep: all` keeps every file."""

    keep: tuple[str, ...] | str

    def __post_init__(self) -> None:
        if self.keep != ALL_LANGUAGES:
            self._check_names("keep")

    def features(self) -> tuple[Feature, ...]:
        return ()

    def params(self) -> dict[str, Any]:
        return {"keep": () if self.keep == ALL_LANGUAGES else self.keep}

    def predicate(self) -> str:
        return "false" if self.keep == ALL_LANGUAGES else "NOT coalesce(list_contains($keep, language), false)"


@dataclass(frozen=True)
class ExcludedExtensions(Rule):
    """A (language, extension) pair listed in the data file `path`: one `language<TAB>.ext` a line, `#` comments.

    The extension is os.path.splitext's, compared in lower case; `path` is relative to the repository root.
    """

    path: str
    # Filled from `path` by with_root.
    pairs: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise BadThreshold("path", f"must name a file of language<TAB>extension lines, got {self.path!r}")

    def with_root(self, root: Path) -> ExcludedExtensions:
        loaded = dataclasses.replace(self)
        object.__setattr__(loaded, "pairs", tuple(read_extension_pairs(Path(root) / self.path, self.path)))
        return loaded

    def features(self) -> tuple[Feature, ...]:
        return (FILE_EXTENSION,) if self.pairs else ()

    def params(self) -> dict[str, Any]:
        return {"pairs": list(self.pairs)}

    def predicate(self) -> str:
        if not self.pairs:  # an empty list excludes nothing: no file's extension need be cut out
            return "false"
        return "list_contains($pairs, coalesce(language, '') || chr(9) || lower(file_extension))"


def read_extension_pairs(file: Path, key: str) -> list[str]:
    """The `language<TAB>.ext` lines of `file` (extension lower-cased); BadThreshold names a bad line."""
    if not file.is_file():
        raise BadThreshold("path", f"{key} does not exist (a file of language<TAB>extension lines)")
    pairs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        language, sep, extension = line.partition("\t")
        if not sep or not language or not extension.startswith(".") or "\t" in extension:
            raise BadThreshold("path", f"{key}:{number}: expected 'language<TAB>.ext', got {line!r}")
        pairs.append(f"{language}\t{extension.lower()}")
    return sorted(set(pairs))


@dataclass(frozen=True)
class Vendor(Rule):
    """Vendored files by go-enry's `is_vendor` (node_modules/, vendor/, …)."""

    def features(self) -> tuple[Feature, ...]:
        return ()

    def predicate(self) -> str:
        return "coalesce(is_vendor, false)"


@dataclass(frozen=True)
class XmlDeclaration(Rule):
    """Files in `languages` (XML) with `marker` (the XML declaration) in their first `within_chars` code points."""

    languages: tuple[str, ...]
    marker: str
    within_chars: int

    def __post_init__(self) -> None:
        self._check_names("languages")
        if not isinstance(self.marker, str) or not self.marker:
            raise BadThreshold("marker", f"must be a non-empty string, got {self.marker!r}")
        self._check_int("within_chars")

    def features(self) -> tuple[Feature, ...]:
        return ()

    def predicate(self) -> str:
        return "coalesce(list_contains($languages, language), false) AND contains(left(text, $within_chars), $marker)"
