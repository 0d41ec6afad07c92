"""How often each document appears in the training stream, and which split a non-code document goes to.

Epochs: a source with `epochs` e writes each of its train documents floor(e) times, and once more for the
first round(frac(e) * n) of its n train documents (code: repositories) ranked by the MD5 of (seed, source,
key), so the fractional part is an exact share, seeded, and the same for any sharding. Epoch p of the
stream (`epoch` in data/docs) holds every document with more than p copies, so repeats never sit side by
side. Validation documents appear once, whatever the epochs.

Split: code repositories are held out whole by bytes (repo_docs.val_repos). A document of another source
whose repository has code in the stream goes with that repository's code; any other document is val when
the MD5 of ("split", seed, source, key) falls within `format.val_fraction`. So the eval stage, which
evaluates on the val repositories' code files, never sees a repository whose code the model trained on,
and a source whose repositories have no code still gets its share of val documents.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

# The fractional epoch's and the split's hashes: MD5 read as a little-endian integer, as DuckDB's md5_number
# reads it, so a rank computed here and one computed in SQL agree.
_SEP = "\0"


def md5_rank(*parts: object) -> int:
    """The seeded rank of a document or repository: MD5 of its NUL-joined parts as a little-endian integer."""
    return int.from_bytes(hashlib.md5(_SEP.join(str(p) for p in parts).encode("utf-8")).digest(), "little")


def whole_epochs(epochs: float) -> int:
    """How many times every train document of a source appears."""
    return math.floor(epochs)


def extra_count(epochs: float, documents: int) -> int:
    """How many of `documents` appear once more for the fractional part of `epochs` (rounded half up)."""
    return math.floor((epochs - math.floor(epochs)) * documents + 0.5)


def passes(epochs: Iterable[float]) -> int:
    """Epochs of the stream: the most copies any document can have (at least one, for the val split)."""
    return max([1, *(math.ceil(e) for e in epochs)])


def copies(epochs: float, extra: bool) -> int:
    """Copies of one train document in the stream."""
    return whole_epochs(epochs) + int(extra)


def extra_repos(seed: int, source: str, repos: Iterable[str], epochs: float) -> set[str]:
    """The repositories whose documents appear once more for the fractional part: the first by MD5 rank."""
    ranked = sorted(repos, key=lambda name: (md5_rank(seed, source, name), name))
    return set(ranked[: extra_count(epochs, len(ranked))])


def val_cut(val_fraction: float) -> int:
    """The split rank under which a document without code in its repository is held out."""
    return int(val_fraction * 2**128)
