"""One training document per repository, in StarCoder2's repository-context format (spec §6.1).

With metadata: `<repo_name>REPO<file_sep>path1\\ncode1<file_sep>path2\\ncode2…<|endoftext|>`;
without: `<file_sep>code1<file_sep>code2…<|endoftext|>`. Files come in a random order seeded
per repository, so a document never depends on which repositories were processed before it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence

from starbuild.special_tokens import END_OF_TEXT, FILE_SEP, REPO_NAME


def repo_rng(seed: int, repo_name: str) -> random.Random:
    """The random generator of one repository's document, derived from (seed, repo_name)."""
    digest = hashlib.sha256(f"format:{seed}:{repo_name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def render_document(
    repo_name: str,
    files: Iterable[tuple[str, str]],
    rng: random.Random,
    metadata_probability: float,
) -> str:
    """The document of a repository from its (path, content) files."""
    # Sort first so the shuffle depends only on the files, not on the order they were read.
    ordered = sorted(files)
    rng.shuffle(ordered)
    if rng.random() < metadata_probability:
        body = "".join(f"{FILE_SEP}{path}\n{content}" for path, content in ordered)
        return f"{REPO_NAME}{repo_name}{body}{END_OF_TEXT}"
    return "".join(f"{FILE_SEP}{content}" for _, content in ordered) + END_OF_TEXT


def split_key(seed: int, repo_name: str) -> str:
    """The sort key that decides which repositories are held out."""
    return hashlib.sha1(f"{seed}:{repo_name}".encode()).hexdigest()


def val_repos(repo_names: Sequence[str], seed: int, val_fraction: float) -> set[str]:
    """The held-out repositories: the first round(val_fraction * n) by split_key (at least one).

    With fewer than two repositories everything is train; at least one repository stays train.
    """
    n = len(repo_names)
    if n < 2:
        return set()
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    ranked = sorted(repo_names, key=lambda name: (split_key(seed, name), name))
    return set(ranked[:n_val])
