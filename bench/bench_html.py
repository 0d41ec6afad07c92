"""The HTML rule's visible-text count: starbuild's counter (filters/html.py) against BeautifulSoup's tree, the
StarCoder1 measure it must equal, on the markup files of this machine.

The files are every HTML, XHTML, SVG and XML file under 1 MB on this machine's file system (site-packages,
/usr/share, ...), taken every k-th in sorted order up to FILES, read as UTF-8 (others skipped). Each count is
checked equal to BeautifulSoup's, file by file; each side's time is the best of REPEATS passes, alternated.
Run: `.venv/bin/python bench/bench_html.py [ROOT]`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

# The BeautifulSoup count comes from tests/filter_reference.py; the bench runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILES = 3000
REPEATS = 3
SUFFIXES = {".html", ".htm", ".xhtml", ".svg", ".xml"}
MAX_BYTES = 1_000_000


def markup_files(root: Path) -> list[str]:
    """The texts of up to FILES markup files under `root`, spread over the sorted list."""
    paths = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in {"proc", "sys", "dev", "tmp"})
        paths += [Path(directory, name) for name in sorted(names) if Path(name).suffix.lower() in SUFFIXES]
    paths = [path for path in paths if path.is_file() and 0 < path.stat().st_size <= MAX_BYTES]
    texts = []
    for path in paths[:: max(1, len(paths) // FILES)]:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return texts


def main() -> None:
    from starbuild.filters.html import visible_chars
    from tests.filter_reference import beautifulsoup_visible_chars

    warnings.simplefilter("ignore")
    texts = markup_files(Path(sys.argv[1] if len(sys.argv) > 1 else "/"))
    size = sum(len(text.encode("utf-8")) for text in texts)
    print(f"{len(texts)} markup files, {size / 1e6:.1f} MB")
    best = {"BeautifulSoup": float("inf"), "starbuild": float("inf")}
    counts = {}
    for _ in range(REPEATS):
        for name, count in (("BeautifulSoup", beautifulsoup_visible_chars), ("starbuild", visible_chars)):
            start = time.perf_counter()
            counts[name] = [count(text) for text in texts]
            best[name] = min(best[name], time.perf_counter() - start)
    differ = sum(a != b for a, b in zip(counts["BeautifulSoup"], counts["starbuild"], strict=True))
    for name, seconds in best.items():
        print(f"{name:14s} {seconds:6.2f} s  {size / seconds / 1e6:5.2f} MB/s")
    print(f"starbuild/BeautifulSoup speed: {best['BeautifulSoup'] / best['starbuild']:.2f}x; "
          f"counts that differ: {differ} of {len(texts)}")
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
