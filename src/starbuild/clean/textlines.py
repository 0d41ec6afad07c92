"""Line spans of a text that a cheap pattern selects, so slow detectors only read those lines."""

from __future__ import annotations

import re
from collections.abc import Iterator


def lines_matching(pattern: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every line of `text` holding a match of `pattern`, each line once, in order."""
    end = -1
    for match in pattern.finditer(text):
        if match.start() < end:
            continue
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        end = len(text) if end == -1 else end
        yield start, end
