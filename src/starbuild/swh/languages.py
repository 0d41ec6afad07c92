"""Language, vendored and generated flags of a file, from go-enry as The Stack v2 computed them.

go-enry (GitHub Linguist's rules and names, through `enry-python`, in-process) looks at the path
and the content: a `.h` file holding C++ is C++, `node_modules/…` is vendored, a protobuf output
or a minified bundle is generated. An empty answer becomes null, as in The Stack v2.

go-enry tries its strategies in order (modeline, filename, shebang, extension, then content) and stops
at the first that names one language; its call costs ~50 µs a file, mostly the modeline search. Most
files have none of the first three and an extension with a single language, which then decides:
`extension_language` gives go-enry's answer for them from cheap checks and one cached lookup, and
leaves go-enry every other file. A `.h` file (C, C++ or Objective-C) is the costly case: go-enry
runs Linguist's Objective-C and C++ patterns over the whole file with Go's regexp, which has no DFA
(most of a pull's time on C and C++ code); the same patterns run through RE2, the engine Go's
regexp is a port of (same syntax, same `\\s`, `\\w`, `\\b` and multi-line anchors).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import enry
import re2
from enry.definitions import lib as enry_library
from enry.utils import go_str_slice_to_py, prepare_candidates

from starbuild.swh.go_enry_vendor import FAST_VENDOR_MATCHER


@dataclass(frozen=True)
class FileKind:
    """What go-enry says of one file."""

    language: str | None
    is_vendor: bool
    is_generated: bool


def classify(path: str, content: bytes) -> FileKind:
    """go-enry's language (None when it has none), vendored and generated flags for `path` with `content`."""
    language = extension_language(path, content)
    if language is None:
        language = enry.get_language(path, content) or None
    return FileKind(
        language=language,
        is_vendor=is_vendor(path),
        is_generated=bool(enry.is_generated(path, content)),
    )


def _search_set(patterns: list[str], latin1: bool = False) -> re2.Set:
    """RE2 patterns searched for together, in one pass: `Match(text)` lists those found anywhere in it.

    The public RE2::Set runs at a fraction of the cost of `re2.compile(...).search`'s Python layers.
    """
    options = re2.Options()
    options.never_capture = True
    # A Set has no slower engine to fall back on when its DFA outgrows this budget (it would report no
    # match), so it gets eight times RE2's default, far beyond what these patterns' automata need.
    options.max_mem = 64 << 20
    if latin1:
        # Latin-1: every byte is one character, so `.` crosses bytes that are not UTF-8 as Go's regexp does
        # (it reads them as U+FFFD); the patterns are ASCII, so a match exists in one engine iff in the other.
        options.encoding = re2.Options.Encoding.LATIN1
    found = re2.Set.SearchSet(options)
    for pattern in patterns:
        found.Add(pattern)
    found.Compile()
    return found


# go-enry's IsVendor is one regular expression over the path; RE2 (Go's regexp's syntax) answers in a tenth
# of the time of the call into Go.
_VENDOR = _search_set([FAST_VENDOR_MATCHER])


def is_vendor(path: str) -> bool:
    """go-enry's vendored flag for `path`."""
    return bool(_VENDOR.Match(path))


# go-enry's content heuristics for `.h` (its data/content.go, from Linguist's heuristics.yml): the first
# rule that matches (the lowest index the Set finds) names the language, C when none does. Checked against
# go-enry in tests/test_languages.py.
_HEADER_LANGUAGES = ("Objective-C", "C++")
_HEADER_RULES = _search_set([
    r'(?m)^\s*(@(interface|class|protocol|property|end|synchronised|selector|implementation)\b|#import\s+.+\.h[">])',
    r"(?m)^\s*#\s*include <(cstdint|string|vector|map|list|array|bitset|queue|stack|forward_list|unordered_map"
    r"|unordered_set|(i|o|io)stream)>|^\s*template\s*<|^[ \t]*(try|constexpr)|^[ \t]*catch\s*\("
    r"|^[ \t]*(class|(using[ \t]+)?namespace)\s+\w+|^[ \t]*(private|public|protected):$|__has_cpp_attribute"
    r"|__cplusplus >|std::\w+",
], latin1=True)
_HEADER_DEFAULT = "C"
# go-enry's IsBinary: a NUL byte among the first 8,000.
_BINARY_SNIFF_BYTES = 8000


def extension_language(path: str, content: bytes) -> str | None:
    """go-enry's language of a file its extension or its `.h` rules decide, or None when go-enry must answer."""
    language, header = _extension_outcome(_suffix(path))
    if language is None and not header:
        return None  # no extension, or several languages: go-enry's later strategies decide
    if b"\0" in content[:_BINARY_SNIFF_BYTES] or content.startswith(b"#!"):
        return None  # binary (no language) or a shebang: go-enry's earlier strategies
    if enry.get_language_by_filename(path).language:
        return None
    if _may_have_modeline(content) and enry.get_language_by_modeline(content).language:
        return None
    if not header:
        return language
    found = _HEADER_RULES.Match(content)
    return _HEADER_LANGUAGES[min(found)] if found else _HEADER_DEFAULT


# go-enry reads modelines in the first and last lines of a file (getHeaderAndFooter's searchScope).
_MODELINE_LINES = 5


def _may_have_modeline(content: bytes) -> bool:
    """False only when go-enry's modeline strategy cannot name a language (it copies and scans the whole file
    to find out, as costly as the heuristics): an Emacs modeline needs `-*-`, a Vim one `ft=`, `filetype=` or
    `syntax=` in any case (Go's case folding adds only `ſ` for `s`), in the lines go-enry reads."""
    region = _header_and_footer(content)
    if b"-*-" in region:
        return True
    lowered = region.lower()
    return b"=" in region and any(word in lowered for word in (b"ft", b"filetype", b"syntax", "ſ".encode()))


def _header_and_footer(content: bytes) -> bytes:
    """The bytes go-enry's modeline search reads: the file, or its first and last lines joined as go-enry joins them."""
    # Found from both ends rather than counted: a header can be megabytes.
    head_end = -1
    for _ in range(_MODELINE_LINES):
        head_end = content.find(b"\n", head_end + 1)
        if head_end < 0:
            return content
    foot_start = len(content)
    for _ in range(_MODELINE_LINES):
        foot_start = content.rfind(b"\n", 0, foot_start)
    if foot_start <= head_end:  # fewer than 2 * _MODELINE_LINES newlines: the lines overlap
        return content
    return content[:head_end] + content[foot_start + 1:]


def _suffix(path: str) -> str:
    """What go-enry's extension strategy reads of `path`: its lowercased name from the first dot ('' if none);
    it tries the dotted suffixes of that, longest first (a directory's dots only add suffixes with a `/`,
    which no extension has)."""
    name = os.path.basename(path).lower()
    dot = name.find(".")
    return "" if dot < 0 else name[dot:]


@functools.lru_cache(maxsize=4096)
def _extension_outcome(suffix: str) -> tuple[str | None, bool]:
    """For a name ending in `suffix`: the one language go-enry's extension strategy gives it (None for none or
    several), and whether it goes on to the `.h` content rules (probed with one content per outcome)."""
    if not suffix:
        return None, False
    probe = "probe" + suffix
    languages = _extension_languages(probe)
    header = (suffix.endswith(".h")
              and enry.get_language(probe, b"@interface X\n") == "Objective-C"
              and enry.get_language(probe, b"namespace x {}\n") == "C++"
              and enry.get_language(probe, b"int x;\n") == _HEADER_DEFAULT)
    return languages[0] if len(languages) == 1 else None, header


def _extension_languages(name: str) -> list[str]:
    """go-enry's GetLanguagesByExtension: every language the extension of `name` may be. enry-python wraps
    only the one-answer form, whose `safe` flag it sets whenever there is an answer, so the library's own
    export is called."""
    candidates, _ = prepare_candidates(None)  # no candidates: no filter
    return go_str_slice_to_py(enry_library, enry_library.GetLanguagesByExtension(name.encode(), b"", 0, candidates))
