"""Training documents per repository, in StarCoder2's repository-context format (spec §6.1, §6.2).

With metadata: `<repo_name>REPO<file_sep>path1\\ncode1<file_sep>path2\\ncode2…<|endoftext|>`;
without: `<file_sep>code1<file_sep>code2…<|endoftext|>`. Files come in a random order; a repository
larger than `max_doc_bytes` becomes several documents, cut at file boundaries, each with the same
metadata choice; each document may get file-level FIM (`fim.py`). Every random choice comes from a
generator seeded per repository, so a document never depends on which repositories came before it.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from starbuild.format.fim import FimConfig, apply_fim
from starbuild.special_tokens import END_OF_TEXT, FILE_SEP, REPO_NAME


@dataclass
class Document:
    """One training document: its text, how many files it holds, and the FIM layouts it got."""

    text: str
    n_files: int
    fim_layouts: Counter[str] = field(default_factory=Counter)


def repo_rng(seed: int, repo_name: str, epoch: int = 0) -> random.Random:
    """The random generator of one repository's documents in one epoch, derived from (seed, repo_name, epoch)."""
    # Epoch 0 keeps the derivation it always had, so a mixture without repeats writes the bytes it did.
    name = repo_name if epoch == 0 else f"{repo_name}:{epoch}"
    digest = hashlib.sha256(f"format:{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _parts(chunks: list[str], max_bytes: int) -> list[list[str]]:
    """Consecutive chunks grouped into parts of at most `max_bytes` UTF-8 bytes (a bigger chunk alone)."""
    parts: list[list[str]] = []
    size = 0
    for chunk in chunks:
        length = len(chunk.encode("utf-8"))
        if not parts or size + length > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(chunk)
        size += length
    return parts


def render_documents(
    repo_name: str,
    files: Iterable[tuple[str, str]],
    rng: random.Random,
    metadata_probability: float,
    fim: FimConfig,
    max_doc_bytes: int,
) -> list[Document]:
    """The documents of a repository from its (path, content) files."""
    # Sort first so the shuffle depends only on the files, not on the order they were read.
    ordered = sorted(files)
    rng.shuffle(ordered)
    metadata = rng.random() < metadata_probability
    chunks = [f"{path}\n{content}" if metadata else content for path, content in ordered]
    header = f"{REPO_NAME}{repo_name}" if metadata else ""
    documents = []
    for part in _parts(chunks, max_doc_bytes):
        transformed, layouts = apply_fim(part, rng, fim)
        text = header + "".join(FILE_SEP + chunk for chunk in transformed) + END_OF_TEXT
        documents.append(Document(text, len(part), Counter(layouts)))
    return documents


def split_key(seed: int, repo_name: str) -> str:
    """The sort key that decides which repositories are held out."""
    return hashlib.sha1(f"{seed}:{repo_name}".encode()).hexdigest()


def val_repos(repo_bytes: Mapping[str, int], seed: int, val_fraction: float) -> set[str]:
    """The held-out repositories: in split_key order, each that keeps val within val_fraction of the bytes.

    A repository that would push val over its share is skipped, so one large repository cannot make
    val larger than asked. With two or more repositories val holds at least one (the smallest, when none
    fits) and train at least one; with fewer, everything is train.
    """
    if len(repo_bytes) < 2:
        return set()
    budget = val_fraction * sum(repo_bytes.values())
    ranked = sorted(repo_bytes, key=lambda name: (split_key(seed, name), name))
    held: set[str] = set()
    used = 0
    for name in ranked[:-1]:  # the last-ranked repository always trains
        if used + repo_bytes[name] <= budget:
            held.add(name)
            used += repo_bytes[name]
    if not held:
        held.add(min(enumerate(ranked[:-1]), key=lambda item: (repo_bytes[item[1]], item[0]))[1])
    return held
