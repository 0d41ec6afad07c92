"""License file names by The Stack v2's rule: explicit license tokens with optional prefix and suffix."""

from __future__ import annotations

import pytest

from starbuild.swh.licenses import LICENSE_FILE_PATTERN

LICENSE_FILES = ["LICENSE", "license.txt", "LICENCE.md", "LICENSES", "COPYING", "COPYING3", "COPYING.LESSER",
                 "LICENSE-MIT", "LICENSE-APACHE", "LICENSE.MIT", "MIT-LICENSE", "gpl-3.0.txt", "LGPLv2.1",
                 "UNLICENSE", "Apache-2.0.txt", "LEGAL", "copyright"]
OTHER_FILES = ["setup.py", "README.md", "NOTICE", "main.c", "palgo.c", "alpha.py", "mitigate.py", "gplot.c",
               "licensing.md", "Makefile"]


@pytest.mark.parametrize("name", LICENSE_FILES)
def test_license_file_names_match(name: str) -> None:
    assert LICENSE_FILE_PATTERN.match(name)


@pytest.mark.parametrize("name", OTHER_FILES)
def test_other_file_names_do_not(name: str) -> None:
    assert not LICENSE_FILE_PATTERN.match(name)
