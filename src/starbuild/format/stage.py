"""The `format` stage: repository documents with FIM, split into train and val by repository and bytes."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.format.fim import PSM, SPM, FimConfig
from starbuild.format.mixture import LanguageCut, MixtureConfig, language_cuts, read_within_caps
from starbuild.format.repo_docs import render_documents, repo_rng, val_repos

log = logging.getLogger(__name__)

@dataclass
class FormatConfig:
    """The `format` config section (not frozen: Hydra merges conf/format/ into it)."""

    # Chance that a repository's documents carry `<repo_name>` and file paths (StarCoder2 §5.1).
    metadata_probability: float
    # Share of the bytes held out for validation, by whole repositories.
    val_fraction: float
    # Documents per output shard of each split.
    docs_per_shard: int
    # A repository larger than this (UTF-8 bytes of its files) becomes several documents, cut between files.
    max_doc_bytes: int = 1_000_000
    # File-level fill-in-the-middle (StarCoder2 §5.1, spec §6.2).
    fim: FimConfig = field(default_factory=FimConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.metadata_probability <= 1.0:
            raise ValueError(f"metadata_probability must be within [0, 1], got {self.metadata_probability}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be within [0, 1), got {self.val_fraction}")
        if self.docs_per_shard < 1:
            raise ValueError(f"docs_per_shard must be at least 1, got {self.docs_per_shard}")
        if self.max_doc_bytes < 1:
            raise ValueError(f"max_doc_bytes must be at least 1, got {self.max_doc_bytes}")


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


class SplitWriter:
    """Writes one split's documents as shards of a fixed number of documents."""

    def __init__(self, directory: Path, split: str, docs_per_shard: int) -> None:
        self.directory = directory
        self.split = split
        self.docs_per_shard = docs_per_shard
        self.rows: list[dict[str, Any]] = []
        self.shards = 0
        self.docs = 0
        self.bytes = 0
        directory.mkdir(parents=True)

    def add(self, repo_name: str, n_files: int, text: str) -> None:
        """Queue one document; write a shard when enough are queued."""
        size = len(text.encode("utf-8"))
        self.rows.append(
            {"repo_name": repo_name, "split": self.split, "n_files": n_files, "length_bytes": size, "text": text}
        )
        self.docs += 1
        self.bytes += size
        if len(self.rows) == self.docs_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the queued documents as the next shard."""
        table = pa.Table.from_pylist(self.rows, schema=schemas.DOCS)
        write_shard(table, self.directory / shard_name(self.shards))
        self.shards += 1
        self.rows = []

    def close(self) -> None:
        """Write what is left; an empty split still gets one (empty) shard carrying the schema."""
        if self.rows or self.shards == 0:
            self.flush()


def run_format(ctx: StageContext) -> None:
    """Write data/docs/{train,val}/: the documents of every repository of data/clean/."""
    params = ctx.section("format", FormatConfig)
    seed = int(ctx.cfg.seed)
    shards = ctx.input_shards(layout.CLEAN, schemas.CLEAN)
    # StarCoder2 cut its largest languages before building repository documents (conf/mixture/).
    cuts = language_cuts(shards, ctx.section("mixture", MixtureConfig).language_caps, seed)
    # Only languages a cap cut need their files' ranks on reading; the rest read plainly.
    cutting = {language: cut for language, cut in cuts.items() if cut.files_after < cut.files_before}
    sizes, missing = repo_sizes(shards, cutting, seed)
    if not sizes:
        raise StageError(f"{layout.CLEAN} holds no files; check the sources and filters upstream")
    held_out = val_repos(sizes, seed, params.val_fraction)
    log.info("formatting %d repositories (%d val, %d of %d bytes) from %d shards", len(sizes), len(held_out),
             sum(sizes[name] for name in held_out), sum(sizes.values()), len(shards))

    files, split_repos, fim_docs = 0, 0, 0
    layouts: Counter[str] = Counter({PSM: 0, SPM: 0})
    with atomic_output(ctx.output(layout.DOCS)) as tmp:
        writers = {split: SplitWriter(tmp / split, split, params.docs_per_shard) for split in layout.SPLITS}
        repos = iter_repos(shards, cutting, seed)
        for repo_name, repo_files in tqdm(repos, total=len(sizes), desc="format", unit="repo"):
            documents = render_documents(repo_name, repo_files, repo_rng(seed, repo_name),
                                         params.metadata_probability, params.fim, params.max_doc_bytes)
            writer = writers[layout.VAL if repo_name in held_out else layout.TRAIN]
            for document in documents:
                writer.add(repo_name, document.n_files, document.text)
                layouts.update(document.fim_layouts)
                fim_docs += bool(document.fim_layouts)
            files += len(repo_files)
            split_repos += len(documents) > 1
        for writer in writers.values():
            writer.close()

    train, val = writers[layout.TRAIN], writers[layout.VAL]
    metrics = {
        "repos": len(sizes),
        "train_repos": len(sizes) - len(held_out),
        "val_repos": len(held_out),
        "train_docs": train.docs,
        "val_docs": val.docs,
        "train_bytes": train.bytes,
        "val_bytes": val.bytes,
        # What the split is measured in: the held-out repositories' share of the files' bytes.
        "val_byte_share": round(sum(sizes[name] for name in held_out) / max(sum(sizes.values()), 1), 4),
        "files": files,
        "repos_split": split_repos,
        "fim_docs": fim_docs,
        "fim_files": dict(layouts),
        "dropped": {"missing_repo_name": missing},
        "language_caps": {language: {"files_before": cut.files_before, "bytes_before": cut.bytes_before,
                                     "files_after": cut.files_after, "bytes_after": cut.bytes_after}
                          for language, cut in cuts.items()},
    }
    log.info("wrote %d train and %d val documents (%d with FIM: %d PSM, %d SPM files) -> %s", train.docs, val.docs,
             fim_docs, layouts[PSM], layouts[SPM], ctx.output(layout.DOCS))
    ctx.write_metrics(metrics)
