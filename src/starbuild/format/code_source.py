"""The code source: data/clean's files, within the language caps, as repository documents (repo_docs.py).

The table is read once for the repositories' sizes (the split and the fractional epoch need every
repository's name), then once per epoch, repository by repository, to render documents; memory holds one
repository's files and the repositories' names. A repeated repository's documents are rendered again with
a generator seeded by the epoch too, so each copy draws its own file order, metadata and FIM, as StarCoder2's
loader drew FIM afresh each time it met a document.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from starbuild.core import layout
from starbuild.core.stage import StageError
from starbuild.format.epochs import copies, extra_repos, passes
from starbuild.format.fim import PSM, SPM, FimConfig
from starbuild.format.mixture import LanguageCut, read_within_caps
from starbuild.format.repo_docs import Document, render_documents, repo_rng


def repo_sizes(shards: list[Path], cuts: Mapping[str, LanguageCut] | None = None,
               seed: int = 0) -> tuple[dict[str, int], int]:
    """Bytes per repository (its files' `length_bytes` within the language caps' `cuts`) in table order, and the
    number of rows without a name.

    Raise StageError when a repository's rows are not contiguous: documents are built one
    repository at a time, which relies on the table being sorted by (repo_name, path).
    """
    sizes: dict[str, int] = {}
    last: str | None = None
    missing = 0
    for shard in shards:
        table = read_within_caps(shard, ["repo_name", "length_bytes"], cuts or {}, seed)
        for name, size in zip(table.column("repo_name").to_pylist(), table.column("length_bytes").to_pylist(),
                              strict=True):
            if name is None:
                missing += 1
                continue
            if name != last and name in sizes:
                raise StageError(
                    f"rows of repository '{name}' are not contiguous in {layout.CLEAN} "
                    f"(again in {shard.name}); rebuild it sorted by (repo_name, path) with `dvc repro pull`"
                )
            sizes[name] = sizes.get(name, 0) + (size or 0)
            last = name
    return sizes, missing


def iter_repos(shards: list[Path], cuts: Mapping[str, LanguageCut] | None = None,
               seed: int = 0) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(repo_name, [(path, content), …]) per repository (files within the language caps' `cuts`), holding one
    repository at a time."""
    current: str | None = None
    files: list[tuple[str, str]] = []
    for shard in shards:
        table = read_within_caps(shard, ["repo_name", "path", "content"], cuts or {}, seed)
        for name, path, content in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
            if name is None:
                continue
            if name != current and current is not None:
                yield current, files
                files = []
            current = name
            files.append((path or "", content or ""))
    if current is not None:
        yield current, files


@dataclass(frozen=True)
class Rendering:
    """How repository documents are rendered (the `format` section's document knobs)."""

    metadata_probability: float
    fim: FimConfig
    max_doc_bytes: int


@dataclass
class CodeCounts:
    """What the code source's first epoch rendered: each unique document and file counted once."""

    files: int = 0
    repos_split: int = 0
    fim_docs: int = 0
    fim_files: Counter[str] = field(default_factory=lambda: Counter({PSM: 0, SPM: 0}))


@dataclass
class CodeSource:
    """The code source of the mixture: its shards, caps cut, split and the repositories repeated once more."""

    name: str
    epochs: float
    shards: list[Path]
    cutting: Mapping[str, LanguageCut]
    seed: int
    sizes: dict[str, int]
    held_out: set[str]
    counts: CodeCounts = field(default_factory=CodeCounts)

    def __post_init__(self) -> None:
        train = (name for name in self.sizes if name not in self.held_out)
        self.extra = extra_repos(self.seed, self.name, train, self.epochs)

    def copies(self, repo_name: str) -> int:
        """How many times a repository's documents appear (val: once)."""
        return 1 if repo_name in self.held_out else copies(self.epochs, repo_name in self.extra)

    def documents(self, epoch: int, rendering: Rendering) -> Iterator[tuple[str, bool, int, str]]:
        """(repo_name, held out, n_files, text) of each document of `epoch`, in repository order."""
        if epoch >= passes([self.epochs]):
            return
        repos = iter_repos(self.shards, self.cutting, self.seed)
        for repo_name, files in tqdm(repos, total=len(self.sizes), desc=f"format: {self.name}, epoch {epoch}",
                                     unit="repo"):
            if self.copies(repo_name) <= epoch:
                continue
            documents = render_documents(repo_name, files, repo_rng(self.seed, repo_name, epoch),
                                         rendering.metadata_probability, rendering.fim, rendering.max_doc_bytes)
            if epoch == 0:
                self._count(files, documents)
            for document in documents:
                yield repo_name, repo_name in self.held_out, document.n_files, document.text

    def _count(self, files: list[tuple[str, str]], documents: list[Document]) -> None:
        self.counts.files += len(files)
        self.counts.repos_split += len(documents) > 1
        for document in documents:
            self.counts.fim_files.update(document.fim_layouts)
            self.counts.fim_docs += bool(document.fim_layouts)
