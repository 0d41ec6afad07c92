"""Origin-level license detection and The Stack v2 style license classification.

The Stack v2 keeps `detected_licenses` (SPDX ids) and a `license_type`; we classify into
permissive, copyleft, unknown (a license we do not recognise) and no_license.
"""

from __future__ import annotations

import re
from email.message import Message
from pathlib import Path

PERMISSIVE = "permissive"
COPYLEFT = "copyleft"
UNKNOWN = "unknown"
NO_LICENSE = "no_license"

PERMISSIVE_IDS = {
    "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "Apache-2.0", "ISC", "Zlib",
    "PSF-2.0", "Python-2.0", "Unlicense", "CC0-1.0", "BSL-1.0", "NCSA", "X11", "HPND",
}
COPYLEFT_PREFIXES = ("GPL-", "LGPL-", "AGPL-", "MPL-", "EPL-", "EUPL-", "CDDL-", "OSL-", "CECILL", "CC-BY-SA")

# Spellings seen in package metadata that are not SPDX ids.
ALIASES = {
    "gplv2": "GPL-2.0-only",
    "gplv3": "GPL-3.0-only",
    "lgplv3": "LGPL-3.0-only",
    "eplv1": "EPL-1.0",
    "bsd": "BSD-3-Clause",
    "mit license": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "bsd license": "BSD-3-Clause",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "python software foundation license": "PSF-2.0",
    "isc license (iscl)": "ISC",
}

# First-page phrases of license files, most specific first.
FILE_SIGNATURES = [
    ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 3", "LGPL-3.0-only"),
    ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1", "LGPL-2.1-only"),
    ("GNU AFFERO GENERAL PUBLIC LICENSE", "Version 3", "AGPL-3.0-only"),
    ("GNU GENERAL PUBLIC LICENSE", "Version 3", "GPL-3.0-only"),
    ("GNU GENERAL PUBLIC LICENSE", "Version 2", "GPL-2.0-only"),
    ("Mozilla Public License", "Version 2.0", "MPL-2.0"),
    ("Apache License", "Version 2.0", "Apache-2.0"),
    ("Permission is hereby granted, free of charge", "", "MIT"),
    ("Redistribution and use in source and binary forms", "Neither the name", "BSD-3-Clause"),
    ("Redistribution and use in source and binary forms", "", "BSD-2-Clause"),
    ("Permission to use, copy, modify, and/or distribute", "", "ISC"),
]
# License file names, after The Stack v2's rule (spec §1.5, App. A.3): an explicit license token,
# optionally with a prefix and/or suffix joined by '-', '_', '.' or a space (LICENSE-MIT, MIT-LICENSE,
# LICENSE.APACHE, COPYING.LESSER, gpl-3.0.txt); gpl, copying and al may carry a version. The names
# that only may mention a license (README, NOTICE, …) need a real detector and are not read here.
_LICENSE_TOKEN = (
    r"licen[cs]es?|legal|copyright|copyleft|copying(?:v?\d+(?:\.\d+)*)?|unlicense|[al]?gpl(?:-?v?\d+(?:\.\d+)*)?"
    r"|bsd|mitx?|apache|artistic|eupl|gfdl|[mc]pl|cc0|al(?:-?v?\d+(?:\.\d+)*)?"
)
LICENSE_FILE_PATTERN = re.compile(
    rf"^(?:[^/]*[-_. ])?(?:{_LICENSE_TOKEN})(?:[-_. ][^/]*)?$", re.IGNORECASE
)
_OPERATORS = re.compile(r"\s+(?:AND|OR)\s+|\s*[|/,;()]\s*|\s+WITH\s+\S+", re.IGNORECASE)


def _normalise(token: str) -> str:
    token = token.strip().removeprefix("License :: OSI Approved :: ").strip()
    return ALIASES.get(token.lower(), token)


def parse_expression(expression: str) -> list[str]:
    """SPDX ids named by a license expression or metadata string, deduplicated, in order."""
    ids: list[str] = []
    for token in _OPERATORS.split(expression):
        spdx = _normalise(token) if token and token.strip() else ""
        if spdx and spdx not in ids:
            ids.append(spdx)
    return ids


def classify(ids: list[str]) -> str:
    """The license_type of a set of SPDX ids: any copyleft id makes it copyleft."""
    if not ids:
        return NO_LICENSE
    if any(i.startswith(COPYLEFT_PREFIXES) for i in ids):
        return COPYLEFT
    if all(i in PERMISSIVE_IDS for i in ids):
        return PERMISSIVE
    return UNKNOWN


def from_metadata(metadata: Message) -> list[str]:
    """SPDX ids from a distribution's core metadata (License-Expression, License, classifiers)."""
    expression = metadata.get("License-Expression")
    if expression:
        return parse_expression(expression)
    free_text = (metadata.get("License") or "").strip()
    if free_text and "\n" not in free_text and len(free_text) < 100:
        return parse_expression(free_text)
    classifiers = [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    return parse_expression(" AND ".join(c.split(" :: ")[-1] for c in classifiers))


def from_license_files(root: Path) -> list[str]:
    """SPDX ids recognised in LICENSE/COPYING files at the top of a directory."""
    ids: list[str] = []
    for path in sorted(p for p in root.iterdir() if p.is_file() and LICENSE_FILE_PATTERN.match(p.name)):
        ids.extend(i for i in from_license_text(path.read_text("utf-8", errors="replace")) if i not in ids)
    return ids


def from_license_text(text: str) -> list[str]:
    """SPDX id of a license file's text, recognised by its first-page phrases."""
    head = text[:4000]
    for phrase, qualifier, spdx in FILE_SIGNATURES:
        if phrase in head and qualifier in head:
            return [spdx]
    return []
