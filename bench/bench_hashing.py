"""Directory SWHIDs: starbuild's hashlib walk against swh.model's `Directory.from_disk`, in one run.

Prints the ratio of wall times (lower is better for starbuild) and checks both give the same id.
Run: `make bench` (or `.venv/bin/python bench/bench_hashing.py [DIR]`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from swh.model.from_disk import Directory, ignore_directories_patterns

from starbuild.swh.origins import Origin, walk_directory

REPEATS = 3


def best_of(fn, repeats: int = REPEATS) -> tuple[float, str]:
    """Best wall time over `repeats` calls and the (same every time) result."""
    times, result = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    import torch

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(torch.__file__).parent / "include"
    ours_s, ours = best_of(lambda: "swh:1:dir:" + walk_directory(Origin("bench", root), ["__pycache__"],
                                                                 lambda f: None).directory_id)
    swh_s, swh = best_of(lambda: str(Directory.from_disk(
        path=bytes(root), path_filter=ignore_directories_patterns(bytes(root), [b"__pycache__"]),
        max_content_length=None).swhid()))
    assert ours == swh, (ours, swh)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    print(f"tree: {root} ({size / 1e6:.1f} MB), id {ours}")
    print(f"starbuild walk_directory: {ours_s:.3f} s   swh.model Directory.from_disk: {swh_s:.3f} s")
    print(f"ratio starbuild/swh.model: {ours_s / swh_s:.2f}")


if __name__ == "__main__":
    main()
