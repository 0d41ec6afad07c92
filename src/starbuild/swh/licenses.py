"""Per-file license detection and The Stack v2's three-value license_type.

BigCode ran a detector on license-like files only (LICENSE, COPYING, README, NOTICE, …), propagated
what it found to every file under the license file's directory, and classified each file as
permissive, no_license or non_permissive against a permissive whitelist (spec §1.5; swh_sources §4.5).
We follow those rules with askalono and phrase matching standing in for ScanCode.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from email.message import Message
from importlib import resources

import askalono

PERMISSIVE = "permissive"
NO_LICENSE = "no_license"
NON_PERMISSIVE = "non_permissive"
LICENSE_TYPES = (PERMISSIVE, NO_LICENSE, NON_PERMISSIVE)

NOASSERTION = "NOASSERTION"
UNKNOWN_REFERENCE = "LicenseRef-scancode-unknown-license-reference"
# ScanCode ids for texts that amend a license without changing what it permits (contributor
# agreements, DCO, disclaimers, trademark/export/ToS notes). BigCode's get_license_types.py ignores
# exactly these ten when classifying, so a CLA next to an MIT license still reads as permissive.
IGNORED_IDS = frozenset({
    "LicenseRef-scancode-dco-1.1",
    "LicenseRef-scancode-generic-cla",
    "LicenseRef-scancode-google-cla",
    "LicenseRef-scancode-jetty-ccla-1.1",
    "LicenseRef-scancode-newton-king-cla",
    "LicenseRef-scancode-generic-exception",
    "LicenseRef-scancode-generic-export-compliance",
    "LicenseRef-scancode-generic-tos",
    "LicenseRef-scancode-generic-trademark",
    "LicenseRef-scancode-warranty-disclaimer",
})

# Spellings seen in package metadata, classifiers and deprecated SPDX ids, lower-cased.
ALIASES = {
    "gplv2": "GPL-2.0-only",
    "gplv2+": "GPL-2.0-or-later",
    "gplv3": "GPL-3.0-only",
    "gplv3+": "GPL-3.0-or-later",
    "lgplv2": "LGPL-2.0-only",
    "lgplv2+": "LGPL-2.0-or-later",
    "lgplv3": "LGPL-3.0-only",
    "lgplv3+": "LGPL-3.0-or-later",
    "eplv1": "EPL-1.0",
    "gpl-1.0": "GPL-1.0-only",
    "gpl-1.0+": "GPL-1.0-or-later",
    "gpl-2.0": "GPL-2.0-only",
    "gpl-2.0+": "GPL-2.0-or-later",
    "gpl-3.0": "GPL-3.0-only",
    "gpl-3.0+": "GPL-3.0-or-later",
    "lgpl-2.0": "LGPL-2.0-only",
    "lgpl-2.0+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3.0": "LGPL-3.0-only",
    "lgpl-3.0+": "LGPL-3.0-or-later",
    "agpl-1.0": "AGPL-1.0-only",
    "agpl-3.0": "AGPL-3.0-only",
    "bsd": "BSD-3-Clause",
    "mit license": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "bsd license": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "simplified bsd license": "BSD-2-Clause",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "mozilla public license 1.1 (mpl 1.1)": "MPL-1.1",
    "eclipse public license 2.0 (epl-2.0)": "EPL-2.0",
    "european union public licence 1.2 (eupl 1.2)": "EUPL-1.2",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "gnu lesser general public license v2 (lgplv2)": "LGPL-2.0-only",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.0-or-later",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu library or lesser general public license (lgpl)": "LGPL-2.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0-only",
    "gnu affero general public license v3 or later (agplv3+)": "AGPL-3.0-or-later",
    "python software foundation license": "PSF-2.0",
    "isc license (iscl)": "ISC",
    "mit no attribution license (mit-0)": "MIT-0",
    "the unlicense (unlicense)": "Unlicense",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0",
    "zlib/libpng license": "Zlib",
    "universal permissive license (upl)": "UPL-1.0",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
}

# First-page phrases of license files (phrase, qualifier, id), most specific first: LGPL and AGPL
# before GPL, BSD-4 before BSD-3 before BSD-2, because the later entries' phrases also occur in the
# earlier licenses. Matched case-sensitively on whitespace-collapsed text, since the LGPL's preamble
# names the "GNU General Public License" in mixed case while the GPL's title is upper case.
FILE_SIGNATURES = [
    ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 3", "LGPL-3.0-only"),
    ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1", "LGPL-2.1-only"),
    ("GNU LIBRARY GENERAL PUBLIC LICENSE", "Version 2", "LGPL-2.0-only"),
    ("GNU AFFERO GENERAL PUBLIC LICENSE", "Version 3", "AGPL-3.0-only"),
    ("GNU GENERAL PUBLIC LICENSE", "Version 3", "GPL-3.0-only"),
    ("GNU GENERAL PUBLIC LICENSE", "Version 2", "GPL-2.0-only"),
    ("Mozilla Public License", "Version 2.0", "MPL-2.0"),
    ("Eclipse Public License - v 2.0", "", "EPL-2.0"),
    ("Eclipse Public License - v 1.0", "", "EPL-1.0"),
    ("Apache License", "Version 2.0", "Apache-2.0"),
    ("Boost Software License - Version 1.0", "", "BSL-1.0"),
    ("This is free and unencumbered software released into the public domain", "", "Unlicense"),
    ("Permission is hereby granted, free of charge", "", "MIT"),
    ("Redistribution and use in source and binary forms", "All advertising materials", "BSD-4-Clause"),
    ("Redistribution and use in source and binary forms", "Neither the name", "BSD-3-Clause"),
    ("Redistribution and use in source and binary forms", "", "BSD-2-Clause"),
    ("Permission to use, copy, modify, and/or distribute", "", "ISC"),
    ("Altered source versions must be plainly marked as such", "", "Zlib"),
]
_SIGNATURE_HEAD_CHARS = 4000

# License file names, after The Stack v2's rule (spec §1.5, App. A.3): an explicit license token,
# optionally with a prefix and/or suffix joined by '-', '_', '.' or a space (LICENSE-MIT, MIT-LICENSE,
# LICENSE.APACHE, COPYING.LESSER, gpl-3.0.txt); gpl, copying and al may carry a version.
_LICENSE_TOKEN = (
    r"licen[cs]es?|legal|copyright|copyleft|copying(?:v?\d+(?:\.\d+)*)?|unlicense|[al]?gpl(?:-?v?\d+(?:\.\d+)*)?"
    r"|bsd|mitx?|apache|artistic|eupl|gfdl|[mc]pl|cc0|al(?:-?v?\d+(?:\.\d+)*)?"
)
LICENSE_FILE_PATTERN = re.compile(
    rf"^(?:[^/]*[-_. ])?(?:{_LICENSE_TOKEN})(?:[-_. ][^/]*)?$", re.IGNORECASE
)
# Names that may only *mention* a license (App. A.3: readme, notice, disclaimer, about, guidelines),
# with an optional variant (README_en, NOTICE-THIRD-PARTY, README.zh-CN) and a prose extension only,
# so that about.py or readme.go, which are code, stay out.
MENTION_FILE_PATTERN = re.compile(
    r"^(?:readme|notice|disclaimer|about|guidelines)(?:[-_][^/.]*)?(?:\.[a-z]{2}(?:[-_][a-z]{2})?(?=\.))?"
    r"(?:\.(?:md|markdown|mdown|mkd|rst|txt|text|adoc|asciidoc|org|rdoc|textile|html?))?$",
    re.IGNORECASE,
)

_OPERATORS = re.compile(r"\s+(?:AND|OR)\s+|\s*[|/,;()]\s*|\s+WITH\s+\S+", re.IGNORECASE)
_SPDX_ID = re.compile(r"^(?:LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9][A-Za-z0-9.\-]*\+?)$")
# The id runs to the end of the line, less any comment closer (`*/`, `-->`, `*)`, `"""`).
_SPDX_LINE = re.compile(r"SPDX-License-Identifier:[ \t]*(.*?)[ \t]*(?:\*/|-->|\*\)|\"\"\"|'''|$)", re.MULTILINE)


def _strip_classifier(token: str) -> str:
    return token.strip().removeprefix("License :: OSI Approved :: ").strip()


def _normalise(token: str) -> str:
    token = _strip_classifier(token)
    return ALIASES.get(token.lower(), token)


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def is_license_file(path: str) -> bool:
    """Whether BigCode would run license detection on this file, judged by its base name."""
    name = _basename(path)
    return bool(LICENSE_FILE_PATTERN.match(name) or MENTION_FILE_PATTERN.match(name))


def parse_expression(expression: str) -> list[str]:
    """SPDX ids named by a license expression or metadata string, deduplicated, in order."""
    # A known spelling wins as a whole: "GNU General Public License v3 (GPLv3)" holds parentheses
    # and "zlib/libpng license" a slash, which the operator split would tear apart.
    whole = _strip_classifier(expression).lower()
    if whole in ALIASES:
        return [ALIASES[whole]]
    tokens = (_normalise(token) for token in _OPERATORS.split(expression) if token and token.strip())
    return _dedupe(token for token in tokens if token)


def from_metadata(metadata: Message) -> list[str]:
    """SPDX ids from a distribution's core metadata (License-Expression, License, classifiers)."""
    expression = metadata.get("License-Expression")
    if expression:
        return parse_expression(expression)
    free_text = (metadata.get("License") or "").strip()
    # A multi-line or long License field is the license text pasted in, not a name.
    if free_text and "\n" not in free_text and len(free_text) < 100:
        return parse_expression(free_text)
    classifiers = [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    return _dedupe(spdx for c in classifiers for spdx in parse_expression(c.split(" :: ")[-1]))


ASKALONO = "askalono"
SCANCODE = "scancode"
DETECTORS = (ASKALONO, SCANCODE)


def detect(path: str, text: str, min_score: float, detector: str = ASKALONO) -> list[str]:
    """SPDX ids found in one license-like file, sorted; the file's name decides how it is read.

    With `detector="scancode"` ScanCode reads every license-like file whole, as The Stack v2 ran it
    (`min_score` is askalono's and unused then).
    """
    name = _basename(path)
    ids = set(_spdx_lines(text))
    if detector == SCANCODE:
        from starbuild.swh import scancode

        ids.update(spdx for expression in scancode.license_expressions(text) for spdx in parse_expression(expression))
    elif LICENSE_FILE_PATTERN.match(name):
        ids.update(_license_text_ids(text, min_score))
    elif MENTION_FILE_PATTERN.match(name):
        ids.update(_mentions(text))
    return sorted(ids)


def _spdx_lines(text: str) -> list[str]:
    """Ids from `SPDX-License-Identifier:` lines, keeping only id-shaped tokens."""
    ids: list[str] = []
    for match in _SPDX_LINE.finditer(text):
        ids.extend(spdx for spdx in parse_expression(match.group(1)) if _SPDX_ID.match(spdx))
    return _dedupe(ids)


def _license_text_ids(text: str, min_score: float) -> list[str]:
    """The license a full license file holds: askalono when confident, else first-page phrases."""
    name, score = _askalono(text)
    if name and score >= min_score:
        return [_normalise(name)]
    return _signature_ids(text)


@functools.lru_cache(maxsize=1024)
def _askalono(text: str) -> tuple[str, float]:
    """askalono's best match and score, cached: the same LICENSE text recurs across repositories."""
    if not text.strip():
        return "", 0.0
    match = askalono.identify(text)
    return match.name, float(match.score)


def _signature_ids(text: str) -> list[str]:
    """The first FILE_SIGNATURES entry whose phrase and qualifier occur on the first page."""
    head = " ".join(text[:_SIGNATURE_HEAD_CHARS].split())
    for phrase, qualifier, spdx in FILE_SIGNATURES:
        if phrase in head and qualifier in head:
            return [spdx]
    return []


# --- README / NOTICE mentions -------------------------------------------------------------------

_MENTION_SCAN_CHARS = 200_000
# Phrases that introduce a license name; the name runs to the end of the sentence. Only punctuation
# before a space ends it, so "2.0" and "www.apache.org" do not.
_SENTENCE = r"(?P<name>(?:[^.;!?]|[.;!?](?!\s|$)){1,300})"
_MENTION_TRIGGERS = re.compile(
    r"(?:\b(?:licen[cs]ed|released|distributed|available|published|offered|provided)\s+under"
    r"|\bunder\s+the\s+terms\s+of"
    r"|\blicen[cs]e\s*:)"
    + _SENTENCE,
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
_SENTENCE_END = re.compile(r"[.;!?]\s*$")
# "This project is MIT licensed." / "is Apache-2.0-licensed"
_LICENSED_SUFFIX = re.compile(r"\b(?:is|are)\s+(?P<name>[\w.+\- ]{1,40}?)[\s-]licen[cs]ed\b", re.IGNORECASE)
# License families, most specific alternative first so that LGPL wins over the GPL inside it.
_FAMILIES = {
    "LGPL": r"(?:gnu\s+)?(?:library\s+or\s+)?(?:lesser|library)\s+(?:general\s+)?public\s+licen[cs]e"
            r"|\blgpl(?=v?\d|[^a-z]|$)",
    "AGPL": r"(?:gnu\s+)?affero\s+general\s+public\s+licen[cs]e|\bagpl(?=v?\d|[^a-z]|$)",
    "GPL": r"(?:gnu\s+)?general\s+public\s+licen[cs]e|\b(?:gnu\s+)?gpl(?=v?\d|[^a-z]|$)",
    "Apache": r"\bapache\b",
    "MPL": r"mozilla\s+public\s+licen[cs]e|\bmpl(?=v?\d|[^a-z]|$)",
    "EPL": r"eclipse\s+public\s+licen[cs]e|\bepl(?=v?\d|[^a-z]|$)",
    "EUPL": r"european\s+union\s+public\s+licen[cs]e|\beupl(?=v?\d|[^a-z]|$)",
    "CC0": r"\bcc0\b|creative\s+commons\s+zero",
    "CC": r"creative\s+commons(?:\s+attribution)?|\bcc[\s-]by(?:[\s-](?:nc|nd|sa))*\b",
    "0BSD": r"\b0bsd\b|zero[\s-]clause\s+bsd|bsd[\s-]zero[\s-]clause",
    "BSD": r"\bbsd\b",
    "MIT-0": r"\bmit-0\b|\bmit\s+no\s+attribution",
    "MIT": r"\bmit\b",
    "ISC": r"\bisc\b",
    "Unlicense": r"\bthe\s+unlicen[cs]e\b|\bunlicen[cs]e\b",
    "BSL-1.0": r"boost\s+software\s+licen[cs]e|\bbsl-1\.0\b",
    "Zlib": r"\bzlib\b",
    "WTFPL": r"\bwtfpl\b",
    "PSF-2.0": r"python\s+software\s+foundation\s+licen[cs]e",
    "UPL-1.0": r"universal\s+permissive\s+licen[cs]e",
    "PostgreSQL": r"\bpostgresql\s+licen[cs]e",
    "Artistic": r"\bartistic\s+licen[cs]e",
}
# One alternation, so a scan takes the leftmost name and, at one position, the first family listed.
_FAMILY_NAMES = tuple(_FAMILIES)
_FAMILY_PATTERN = re.compile("|".join(f"(?P<f{i}>{_FAMILIES[k]})" for i, k in enumerate(_FAMILY_NAMES)),
                             re.IGNORECASE)
# A version right after a family name: "License, Version 2.0", "v3", "-2.1", " (GPL) version 3".
_VERSION = re.compile(
    r"[\s,-]*(?:\([^)]{0,12}\)\s*)?(?:software\s+)?(?:licen[cs]e)?[\s,]*(?:\([^)]{0,12}\)\s*)?"
    r"(?:as\s+published\s+by\s+the\s+free\s+software\s+foundation[\s,;]*)?(?:either\s+)?"
    r"(?:version|ver\.?|v\.?)?\s*-?\s*(?P<version>\d+(?:\.\d+)?)(?P<plus>\+)?",
    re.IGNORECASE,
)
# "or later" soon after the version: "-or-later", "v3 or later", "of the License, or (at your option) any later".
_OR_LATER = re.compile(r"or[\s-]+(?:\(at\s+your\s+option\)\s+)?(?:any\s+)?(?:later|newer|above)", re.IGNORECASE)
_OR_LATER_WINDOW = 60
_GNU_VERSIONS = {"GPL": ("1.0", "2.0", "3.0"), "LGPL": ("2.0", "2.1", "3.0"), "AGPL": ("1.0", "3.0")}
# An unversioned GNU name allows any version, which SPDX writes as the first one "or later".
_GNU_UNVERSIONED = {"GPL": "GPL-1.0-or-later", "LGPL": "LGPL-2.0-or-later", "AGPL": "AGPL-3.0-or-later"}
_VERSIONED = {"Apache": (("1.0", "1.1", "2.0"), "2.0"), "MPL": (("1.0", "1.1", "2.0"), "2.0"),
              "EPL": (("1.0", "2.0"), "2.0"), "EUPL": (("1.0", "1.1", "1.2"), "1.2"),
              "Artistic": (("1.0", "2.0"), "2.0")}
# BSD variants by the words around "BSD", in order of precedence.
_BSD_VARIANTS = (
    (re.compile(r"4[\s-]clause|four[\s-]clause|original", re.IGNORECASE), "BSD-4-Clause"),
    (re.compile(r"3[\s-]clause|three[\s-]clause|\bnew\b|revised|modified", re.IGNORECASE), "BSD-3-Clause"),
    (re.compile(r"2[\s-]clause|two[\s-]clause|simplified|freebsd", re.IGNORECASE), "BSD-2-Clause"),
    (re.compile(r"1[\s-]clause|one[\s-]clause", re.IGNORECASE), "BSD-1-Clause"),
)
_SPDX_SHAPED = re.compile(r"[A-Za-z][A-Za-z0-9.+]*(?:-[A-Za-z0-9.+]+)+|[A-Za-z]+\d[\w.]*")


def _mentions(text: str) -> list[str]:
    """Ids a README-like text explicitly says it is licensed under; [] when it names none."""
    ids: list[str] = []
    for paragraph in _paragraphs(text[:_MENTION_SCAN_CHARS]):
        for pattern in (_MENTION_TRIGGERS, _LICENSED_SUFFIX):
            for match in pattern.finditer(paragraph):
                ids.extend(_names_in(match.group("name")))
    return _dedupe(ids)


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, whitespace collapsed, with a list joined to the unfinished
    sentence before it ("Licensed under either of" + "* Apache License 2.0 * MIT license")."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        flat = " ".join(block.split())
        if paragraphs and _LIST_ITEM.match(block) and not _SENTENCE_END.search(paragraphs[-1]):
            paragraphs[-1] += " " + flat
        elif flat:
            paragraphs.append(flat)
    return paragraphs


def _names_in(phrase: str) -> list[str]:
    """Ids of the license names in a phrase such as "either the Apache License 2.0 or the MIT license"."""
    ids = []
    for match in _FAMILY_PATTERN.finditer(phrase):
        family = _FAMILY_NAMES[int((match.lastgroup or "f0")[1:])]
        spdx = _resolve(family, phrase, match)
        if spdx:
            ids.append(spdx)
    # An SPDX id written as such ("License: BSL-1.0") that no family above covers.
    ids.extend(token for token in _SPDX_SHAPED.findall(phrase) if token in permissive_ids())
    return _dedupe(ids)


def _resolve(family: str, phrase: str, match: re.Match[str]) -> str | None:
    """The SPDX id a family name stands for, given the words around it."""
    tail = phrase[match.end():]
    if family in _GNU_VERSIONS:
        return _gnu_id(family, tail)
    if family in _VERSIONED:
        known, default = _VERSIONED[family]
        version = _version(tail)
        return f"{family}-{version if version in known else default}"
    if family == "BSD":
        return _bsd_id(phrase[max(0, match.start() - 25):match.end() + 25])
    if family == "CC":
        return _cc_id(match.group(0), tail)
    return "CC0-1.0" if family == "CC0" else family


def _version(tail: str) -> str | None:
    """The version number right after a license name, as "X.Y"."""
    found = _VERSION.match(tail)
    if not found:
        return None
    version = found.group("version")
    return version if "." in version else f"{version}.0"


def _gnu_id(family: str, tail: str) -> str:
    """GPL/LGPL/AGPL with its version and -only / -or-later from the words after the name."""
    found = _VERSION.match(tail)
    version = _version(tail)
    if not found or version not in _GNU_VERSIONS[family]:
        return _GNU_UNVERSIONED[family]
    rest = tail[found.end():]
    later = found.group("plus") or _OR_LATER.search(rest[:_OR_LATER_WINDOW])
    return f"{family}-{version}-{'or-later' if later else 'only'}"


def _bsd_id(window: str) -> str:
    """The BSD variant named near "BSD"; a bare "BSD license" reads as BSD-3-Clause, as in ALIASES."""
    for pattern, spdx in _BSD_VARIANTS:
        if pattern.search(window):
            return spdx
    return "BSD-3-Clause"


def _cc_id(name: str, tail: str) -> str:
    """A Creative Commons attribution license id (CC-BY[-NC][-ND|-SA]-X.Y) from its name and tail."""
    words = f"{name} {tail[:60]}".lower()
    parts = ["CC-BY"]
    if re.search(r"non-?commercial|\bnc\b", words):
        parts.append("NC")
    if re.search(r"no-?deriv|\bnd\b", words):
        parts.append("ND")
    elif re.search(r"share-?alike|\bsa\b", words):
        parts.append("SA")
    found = re.search(r"\b(\d)\.(\d)\b", words)
    parts.append(f"{found.group(1)}.{found.group(2)}" if found else "4.0")
    return "-".join(parts)


# --- propagation and classification ---------------------------------------------------------------


def licensing_directories(paths: Iterable[str]) -> set[str]:
    """The directories whose license files license some of `paths`: each path's own and every one above it."""
    found: set[str] = set()
    for path in paths:
        directory = _dirname(path)
        while directory not in found:  # a directory already found has its ancestors found too
            found.add(directory)
            if directory == "":
                break
            directory = _dirname(directory)
    return found


def applies_to(license_path: str, directories: set[str]) -> bool:
    """Whether the license file `license_path` licenses files in one of `directories` (licensing_directories)."""
    return _dirname(license_path) in directories


def propagate(license_files: Mapping[str, list[str]], paths: Iterable[str]) -> dict[str, list[str]]:
    """Each path's ids: the union over license files in its directory and every ancestor (root is '')."""
    by_directory: dict[str, set[str]] = {}
    for license_path, ids in license_files.items():
        by_directory.setdefault(_dirname(license_path), set()).update(ids)
    memo: dict[str, frozenset[str]] = {}
    return {path: sorted(_inherited(_dirname(path), by_directory, memo)) for path in paths}


def _inherited(directory: str, by_directory: Mapping[str, set[str]], memo: dict[str, frozenset[str]]) -> frozenset[str]:
    """Ids of a directory and its ancestors, memoised so each directory is folded once."""
    if directory not in memo:
        parent = frozenset() if directory == "" else _inherited(_dirname(directory), by_directory, memo)
        memo[directory] = parent | by_directory.get(directory, set())
    return memo[directory]


def license_type(detected: list[str], declared: list[str] | None = None) -> str:
    """BigCode's get_license_types.py rules; `declared` plays the GHArchive repository license."""
    asserted = [spdx for spdx in declared or [] if spdx and spdx != NOASSERTION]
    whitelist = permissive_ids()
    if asserted:
        return PERMISSIVE if all(spdx in whitelist for spdx in asserted) else NON_PERMISSIVE
    if not detected:
        # GitHub's NOASSERTION means it saw a license it could not name: BigCode does not call that unlicensed.
        return NON_PERMISSIVE if declared and NOASSERTION in declared else NO_LICENSE
    permissive = whitelist.intersection(detected)
    others = set(detected) - permissive - IGNORED_IDS
    if permissive:
        # The license is known; an "unknown license reference" is most likely a pointer to it.
        others.discard(UNKNOWN_REFERENCE)
    if others:
        return NON_PERMISSIVE
    # Only ignored ids (a lone CLA, say) is no license at all.
    return PERMISSIVE if permissive else NO_LICENSE


@functools.cache
def permissive_ids() -> frozenset[str]:
    """The permissive whitelist, read once from permissive_licenses.txt."""
    text = resources.files("starbuild.swh").joinpath("permissive_licenses.txt").read_text("utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(line for line in lines if line)
