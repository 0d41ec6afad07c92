"""License file names, per-file detection, propagation by directory and BigCode's license_type rules."""

from __future__ import annotations

import re
from email.message import Message
from importlib import resources

import pytest

from starbuild.swh import licenses
from starbuild.swh.licenses import (
    LICENSE_FILE_PATTERN,
    LICENSE_TYPES,
    MENTION_FILE_PATTERN,
    NO_LICENSE,
    NON_PERMISSIVE,
    PERMISSIVE,
    detect,
    from_metadata,
    is_license_file,
    license_type,
    parse_expression,
    permissive_ids,
    propagate,
)

LICENSE_FILES = ["LICENSE", "license.txt", "LICENCE.md", "LICENSES", "COPYING", "COPYING3", "COPYING.LESSER",
                 "LICENSE-MIT", "LICENSE-APACHE", "LICENSE.MIT", "MIT-LICENSE", "gpl-3.0.txt", "LGPLv2.1",
                 "UNLICENSE", "Apache-2.0.txt", "LEGAL", "copyright"]
OTHER_FILES = ["setup.py", "README.md", "NOTICE", "main.c", "palgo.c", "alpha.py", "mitigate.py", "gplot.c",
               "licensing.md", "Makefile"]
MENTION_FILES = ["README", "readme.md", "README.rst", "README.txt", "NOTICE", "notice.txt", "README_en.md",
                 "README.zh-CN.md", "NOTICE-THIRD-PARTY.txt", "DISCLAIMER", "ABOUT.md"]
NEITHER_FILES = ["readme.py", "about.py", "noticeboard.c", "READMEish", "main.c", "docs.md"]

MIT = """MIT License

Copyright (c) 2024 Jane Doe

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

BSD_HEAD = """Copyright (c) 2024, Jane Doe
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.
"""
BSD_THIRD_CLAUSE = """
3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
"""
BSD_DISCLAIMER = """
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""
BSD_2 = BSD_HEAD + BSD_DISCLAIMER
BSD_3 = BSD_HEAD + BSD_THIRD_CLAUSE + BSD_DISCLAIMER

# First pages only: askalono is not confident on them, so the phrase signatures must decide.
GPL_3_HEAD = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

                            Preamble

  The GNU General Public License is a free, copyleft license for
software and other kinds of works.
"""
LGPL_3_HEAD = """                   GNU LESSER GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

  This version of the GNU Lesser General Public License incorporates
the terms and conditions of version 3 of the GNU General Public
License, supplemented by the additional permissions listed below.
"""
NOT_A_LICENSE = "Build with `make`, then run ./tool --help for the list of options.\n"
MIN_SCORE = 0.8
NEVER_CONFIDENT = 1.01  # above any askalono score, so only the fallback signatures answer


# --- file names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LICENSE_FILES)
def test_license_file_names_match(name: str) -> None:
    assert LICENSE_FILE_PATTERN.match(name)


@pytest.mark.parametrize("name", OTHER_FILES)
def test_other_file_names_do_not(name: str) -> None:
    assert not LICENSE_FILE_PATTERN.match(name)


@pytest.mark.parametrize("name", MENTION_FILES)
def test_mention_file_names_match(name: str) -> None:
    assert MENTION_FILE_PATTERN.match(name)
    assert is_license_file(f"docs/{name}")


@pytest.mark.parametrize("name", NEITHER_FILES)
def test_code_and_other_names_are_not_license_files(name: str) -> None:
    assert not is_license_file(f"src/{name}")


def test_is_license_file_judges_the_base_name_only() -> None:
    assert is_license_file("a/b/LICENSE")
    assert not is_license_file("LICENSE/main.c")


# --- expressions and package metadata -------------------------------------------------------------


@pytest.mark.parametrize(("expression", "ids"), [
    ("MIT OR Apache-2.0", ["MIT", "Apache-2.0"]),
    ("(MIT AND BSD-3-Clause)", ["MIT", "BSD-3-Clause"]),
    ("Apache-2.0 WITH LLVM-exception", ["Apache-2.0"]),
    ("MIT OR MIT", ["MIT"]),
    ("BSD License", ["BSD-3-Clause"]),
    ("Apache Software License", ["Apache-2.0"]),
    ("GPLv3", ["GPL-3.0-only"]),
    ("GPL-2.0+", ["GPL-2.0-or-later"]),
    ("License :: OSI Approved :: MIT License", ["MIT"]),
    ("License :: OSI Approved :: GNU General Public License v3 (GPLv3)", ["GPL-3.0-only"]),
    ("zlib/libpng License", ["Zlib"]),
])
def test_parse_expression(expression: str, ids: list[str]) -> None:
    assert parse_expression(expression) == ids


def _metadata(**fields: str | list[str]) -> Message:
    message = Message()
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            message[key.replace("_", "-")] = item
    return message


def test_metadata_license_expression_wins() -> None:
    metadata = _metadata(License_Expression="MIT OR Apache-2.0", License="GPLv3",
                         Classifier="License :: OSI Approved :: BSD License")
    assert from_metadata(metadata) == ["MIT", "Apache-2.0"]


def test_metadata_license_field_wins_over_classifiers() -> None:
    metadata = _metadata(License="BSD License", Classifier="License :: OSI Approved :: MIT License")
    assert from_metadata(metadata) == ["BSD-3-Clause"]


def test_metadata_pasted_license_text_falls_back_to_classifiers() -> None:
    metadata = _metadata(License=MIT, Classifier=["Programming Language :: Python",
                                                  "License :: OSI Approved :: MIT License",
                                                  "License :: OSI Approved :: Apache Software License"])
    assert from_metadata(metadata) == ["MIT", "Apache-2.0"]


def test_metadata_classifiers_only() -> None:
    metadata = _metadata(Classifier="License :: OSI Approved :: GNU General Public License v3 (GPLv3)")
    assert from_metadata(metadata) == ["GPL-3.0-only"]


# --- detection in one file ------------------------------------------------------------------------


def test_full_mit_text() -> None:
    assert detect("LICENSE", MIT, MIN_SCORE) == ["MIT"]


@pytest.mark.parametrize("min_score", [MIN_SCORE, NEVER_CONFIDENT])
def test_bsd_3_is_not_bsd_2(min_score: float) -> None:
    assert detect("LICENSE.txt", BSD_3, min_score) == ["BSD-3-Clause"]
    assert detect("LICENSE.txt", BSD_2, min_score) == ["BSD-2-Clause"]


@pytest.mark.parametrize("min_score", [MIN_SCORE, NEVER_CONFIDENT])
def test_lgpl_is_not_gpl(min_score: float) -> None:
    assert detect("COPYING.LESSER", LGPL_3_HEAD, min_score) == ["LGPL-3.0-only"]
    assert detect("COPYING", GPL_3_HEAD, min_score) == ["GPL-3.0-only"]


def test_fallback_signatures_survive_rewrapped_lines() -> None:
    rewrapped = MIT.replace("free of charge, to any", "free of\ncharge, to any")
    assert detect("LICENSE", rewrapped, NEVER_CONFIDENT) == ["MIT"]


def test_askalono_results_are_cached_by_text() -> None:
    text = MIT.replace("Jane Doe", "Cache Test")
    detect("LICENSE", text, MIN_SCORE)
    hits = licenses._askalono.cache_info().hits
    assert detect("other/repo/LICENSE.md", text, MIN_SCORE) == ["MIT"]
    assert licenses._askalono.cache_info().hits == hits + 1


def test_non_license_text_in_a_license_file() -> None:
    assert detect("LICENSE", NOT_A_LICENSE, MIN_SCORE) == []
    assert detect("LICENSE", "", MIN_SCORE) == []


@pytest.mark.parametrize(("path", "text", "ids"), [
    ("LICENSE", "SPDX-License-Identifier: Apache-2.0\n", ["Apache-2.0"]),
    ("README.md", "<!-- SPDX-License-Identifier: MIT OR Apache-2.0 -->\n", ["Apache-2.0", "MIT"]),
    ("src/main.c", "/* SPDX-License-Identifier: GPL-2.0-or-later */\nint main(void);\n", ["GPL-2.0-or-later"]),
    ("NOTICE", "SPDX-License-Identifier: <expression>\n", []),
])
def test_spdx_identifier_lines(path: str, text: str, ids: list[str]) -> None:
    assert detect(path, text, MIN_SCORE) == ids


RUST_README = """# tool

## License

Licensed under either of

 * Apache License, Version 2.0
   ([LICENSE-APACHE](LICENSE-APACHE) or http://www.apache.org/licenses/LICENSE-2.0)
 * MIT license
   ([LICENSE-MIT](LICENSE-MIT) or http://opensource.org/licenses/MIT)

at your option.
"""


@pytest.mark.parametrize(("text", "ids"), [
    ('Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file', ["Apache-2.0"]),
    ("This project is licensed under the MIT License - see LICENSE.md for details.", ["MIT"]),
    ("This program is released under the terms of the GNU General Public License version 3.", ["GPL-3.0-only"]),
    ("It is free software: you can redistribute it and/or modify it under the terms of the GNU General Public\n"
     "License as published by the Free Software Foundation, either version 3 of the License, or\n"
     "(at your option) any later version.", ["GPL-3.0-or-later"]),
    ("Distributed under the GNU Lesser General Public License v2.1.", ["LGPL-2.1-only"]),
    ("License: BSD-3-Clause", ["BSD-3-Clause"]),
    ("It is released under the 2-clause BSD license.", ["BSD-2-Clause"]),
    ("[![License: MIT](https://img.shields.io/badge/License-MIT-yellow.svg)](https://opensource.org/licenses/MIT)",
     ["MIT"]),
    ("This crate is MIT licensed.", ["MIT"]),
    ("Distributed under the Boost Software License, Version 1.0.", ["BSL-1.0"]),
    (RUST_README, ["Apache-2.0", "MIT"]),
])
def test_readme_mentions(text: str, ids: list[str]) -> None:
    assert detect("README.md", text, MIN_SCORE) == ids


def test_readme_without_a_mention() -> None:
    readme = "# tool\n\nA tool.\n\n## Install\n\n    pip install tool\n\nSee the license file for terms.\n"
    assert detect("README.md", readme, MIN_SCORE) == []


def test_readme_is_never_matched_as_a_full_license_text() -> None:
    # A README that *is* an MIT text without saying "licensed under" gives nothing: no askalono on READMEs.
    assert detect("README.txt", MIT, MIN_SCORE) == []


# --- propagation ----------------------------------------------------------------------------------


def test_propagate_by_directory() -> None:
    license_files = {"LICENSE": ["MIT"], "sub/COPYING": ["GPL-3.0-only"], "sub/deep/er/LICENSE-APACHE": ["Apache-2.0"]}
    paths = ["main.py", "LICENSE", "sub/a.py", "sub/COPYING", "sub2/b.py", "sub/deep/c.py",
             "sub/deep/er/d.py", "sub/deep/er/est/e.py", "subway/f.py"]
    assert propagate(license_files, paths) == {
        "main.py": ["MIT"],
        "LICENSE": ["MIT"],
        "sub/a.py": ["GPL-3.0-only", "MIT"],
        "sub/COPYING": ["GPL-3.0-only", "MIT"],
        "sub2/b.py": ["MIT"],
        "sub/deep/c.py": ["GPL-3.0-only", "MIT"],
        "sub/deep/er/d.py": ["Apache-2.0", "GPL-3.0-only", "MIT"],
        "sub/deep/er/est/e.py": ["Apache-2.0", "GPL-3.0-only", "MIT"],
        "subway/f.py": ["MIT"],
    }


def test_propagate_without_a_root_license() -> None:
    result = propagate({"lib/LICENSE": ["MIT", "ISC"], "lib/NOTICE": ["MIT"]}, ["x.py", "lib/y.py", "libs/z.py"])
    assert result == {"x.py": [], "lib/y.py": ["ISC", "MIT"], "libs/z.py": []}


# --- license_type ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("detected", "declared", "expected"), [
    # 1. a declared (GHArchive-like) license on the whitelist wins, whatever was detected
    (["GPL-3.0-only"], ["MIT"], PERMISSIVE),
    ([], ["Apache-2.0"], PERMISSIVE),
    # 2. any other declared license is non-permissive, whatever was detected
    (["MIT"], ["GPL-3.0-only"], NON_PERMISSIVE),
    (["MIT"], ["MIT", "GPL-3.0-only"], NON_PERMISSIVE),
    # NOASSERTION declares nothing, so detection decides…
    (["MIT"], ["NOASSERTION"], PERMISSIVE),
    (["GPL-2.0-only"], ["NOASSERTION"], NON_PERMISSIVE),
    # 3. …but with nothing detected it is non-permissive, as in BigCode's code (a license GitHub could not name)
    ([], ["NOASSERTION"], NON_PERMISSIVE),
    ([], None, NO_LICENSE),
    ([], [], NO_LICENSE),
    # 4. detected ids alone
    (["MIT"], None, PERMISSIVE),
    (["BSD-3-Clause", "Apache-2.0"], None, PERMISSIVE),
    (["MIT", "GPL-3.0-only"], None, NON_PERMISSIVE),
    (["MIT", "LicenseRef-scancode-generic-cla"], None, PERMISSIVE),
    (["LicenseRef-scancode-generic-cla"], None, NO_LICENSE),
    (["MIT", "LicenseRef-scancode-unknown-license-reference"], None, PERMISSIVE),
    (["LicenseRef-scancode-unknown-license-reference"], None, NON_PERMISSIVE),
    (["LicenseRef-scancode-unknown-license-reference", "LicenseRef-scancode-dco-1.1"], None, NON_PERMISSIVE),
    (["Some-Unknown-License"], None, NON_PERMISSIVE),
])
def test_license_type(detected: list[str], declared: list[str] | None, expected: str) -> None:
    assert license_type(detected, declared) == expected
    assert expected in LICENSE_TYPES


def test_ignored_ids_are_scancode_references_and_not_permissive() -> None:
    assert all(i.startswith("LicenseRef-scancode-") for i in licenses.IGNORED_IDS)
    assert not licenses.IGNORED_IDS & permissive_ids()


# --- permissive list ------------------------------------------------------------------------------

_ID = re.compile(r"^(?:LicenseRef-[A-Za-z0-9.\-]+|[A-Za-z0-9][A-Za-z0-9.\-]*)$")


def _list_entries() -> list[str]:
    text = resources.files("starbuild.swh").joinpath("permissive_licenses.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_permissive_list_parses_without_duplicates() -> None:
    entries = _list_entries()
    assert 60 <= len(entries) <= 150
    assert len(entries) == len(set(entries))
    assert set(entries) == permissive_ids()
    assert all(_ID.match(entry) for entry in entries), [e for e in entries if not _ID.match(e)]


@pytest.mark.parametrize("spdx", ["MIT", "Apache-2.0", "BSD-3-Clause", "BSD-2-Clause", "ISC", "CC0-1.0", "Unlicense"])
def test_permissive_list_has(spdx: str) -> None:
    assert spdx in permissive_ids()


@pytest.mark.parametrize("spdx", ["GPL-3.0-only", "GPL-2.0-or-later", "LGPL-2.1-only", "AGPL-3.0-only", "MPL-2.0",
                                  "EPL-2.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "Artistic-2.0", "GPL-3.0"])
def test_permissive_list_lacks(spdx: str) -> None:
    assert spdx not in permissive_ids()
