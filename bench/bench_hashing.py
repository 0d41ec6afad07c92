"""Directory SWHIDs: starbuild's hashlib walk against swh.model's `Directory.from_disk`, in one run.

swh.model computes four hashes of every file (sha1, sha1_git, sha256, blake2s256) and has no switch
to compute fewer, so the compared starbuild run computes the same four (equal work); the walk alone
(sha1_git, what the directory id needs) is printed beside it. Prints the ratio of wall times (lower
is better for starbuild) and checks both give the same id.
Run: `make bench` (or `.venv/bin/python bench/bench_hashing.py [DIR]`).
"""

from __future__ import annotations

import hashlib
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
    def walk(on_file) -> str:
        return "swh:1:dir:" + walk_directory(Origin("bench", root), ["__pycache__"], on_file).directory_id

    def the_other_three(file) -> None:
        hashlib.sha1(file.data), hashlib.sha256(file.data), hashlib.blake2s(file.data)

    alone_s, _ = best_of(lambda: walk(lambda f: None))
    ours_s, ours = best_of(lambda: walk(the_other_three))
    swh_s, swh = best_of(lambda: str(Directory.from_disk(
        path=bytes(root), path_filter=ignore_directories_patterns(bytes(root), [b"__pycache__"]),
        max_content_length=None).swhid()))
    assert ours == swh, (ours, swh)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    print(f"tree: {root} ({size / 1e6:.1f} MB), id {ours}")
    print(f"swh.model Directory.from_disk (4 hashes per file): {swh_s:.3f} s")
    print(f"starbuild walk_directory + the same 4 hashes:     {ours_s:.3f} s")
    print(f"starbuild walk_directory alone (sha1_git):        {alone_s:.3f} s")
    print(f"ratio starbuild/swh.model, equal work: {ours_s / swh_s:.2f}")


if __name__ == "__main__":
    main()
