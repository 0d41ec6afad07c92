"""The `format` stage: the training stream of every mixture source, split into train and val.

Code (data/clean, within the language caps) becomes repository documents with FIM, split by repository and
bytes; every other source (conf/mixture/ `sources`) becomes one document per row, in its repository's
split. Epoch by epoch (epochs.py), each source in name order writes the documents that epoch repeats, so
data/docs/train is the training stream itself and data/docs/val holds every held-out document once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, shard_name, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.format.code_source import CodeSource, Rendering, repo_sizes
from starbuild.format.epochs import copies, passes
from starbuild.format.fim import PSM, SPM, FimConfig
from starbuild.format.mixture import MixtureConfig, MixtureSource, language_cuts
from starbuild.format.repo_docs import val_repos
from starbuild.format.text_sources import TextSource, check_table, open_source
from starbuild.special_tokens import END_OF_TEXT

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


class SplitWriter:
    """Writes one split's documents as shards of a fixed number of documents; counts them per source."""

    def __init__(self, directory: Path, split: str, docs_per_shard: int) -> None:
        self.directory = directory
        self.split = split
        self.docs_per_shard = docs_per_shard
        self.rows: list[dict[str, Any]] = []
        self.shards = 0
        self.docs = 0
        self.bytes = 0
        self.source_docs: Counter[str] = Counter()
        self.source_bytes: Counter[str] = Counter()
        directory.mkdir(parents=True)

    def add(self, repo_name: str, n_files: int, text: str, source: str, epoch: int,
            language: str | None = None) -> None:
        """Queue one document; write a shard when enough are queued."""
        size = len(text.encode("utf-8"))
        self.rows.append({"repo_name": repo_name, "split": self.split, "n_files": n_files, "length_bytes": size,
                          "text": text, "source": source, "epoch": epoch, "language": language})
        self.docs += 1
        self.bytes += size
        self.source_docs[source] += 1
        self.source_bytes[source] += size
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


def open_code(ctx: StageContext, name: str, source: MixtureSource, params: FormatConfig,
              caps: dict[str, int], seed: int) -> tuple[CodeSource, dict[str, Any]]:
    """The code source, split by repository and bytes within the caps; the caps' and split's metrics."""
    shards = ctx.input_shards(layout.CLEAN, schemas.CLEAN)
    # StarCoder2 cut its largest languages before building repository documents (conf/mixture/).
    cuts = language_cuts(shards, caps, seed)
    # Only languages a cap cut need their files' ranks on reading; the rest read plainly.
    cutting = {language: cut for language, cut in cuts.items() if cut.files_after < cut.files_before}
    sizes, missing = repo_sizes(shards, cutting, seed)
    if not sizes:
        raise StageError(f"{layout.CLEAN} holds no files; check the sources and filters upstream")
    held_out = val_repos(sizes, seed, params.val_fraction)
    log.info("code: %d repositories (%d val, %d of %d bytes) from %d shards", len(sizes), len(held_out),
             sum(sizes[name] for name in held_out), sum(sizes.values()), len(shards))
    metrics = {
        "repos": len(sizes),
        "train_repos": len(sizes) - len(held_out),
        "val_repos": len(held_out),
        # What the split is measured in: the held-out repositories' share of the files' bytes.
        "val_byte_share": round(sum(sizes[name] for name in held_out) / max(sum(sizes.values()), 1), 4),
        "dropped": {"missing_repo_name": missing},
        "language_caps": {language: {"files_before": cut.files_before, "bytes_before": cut.bytes_before,
                                     "files_after": cut.files_after, "bytes_after": cut.bytes_after}
                          for language, cut in cuts.items()},
    }
    return CodeSource(name, source.epochs, shards, cutting, seed, sizes, held_out), metrics


def write_text_epoch(source: TextSource, epoch: int, writers: dict[str, SplitWriter], dropped: Counter[str]) -> None:
    """Write the documents of a non-code source that `epoch` holds; count empty texts once (epoch 0)."""
    if epoch >= passes([source.spec.epochs]):
        return
    for shard in tqdm(source.shards, desc=f"format: {source.name}, epoch {epoch}", unit="shard"):
        for repo_name, text, language, held, extra in source.rows(shard):
            if not text:
                dropped["null_text" if text is None else "empty_text"] += epoch == 0
                continue
            if (1 if held else copies(source.spec.epochs, extra)) > epoch:
                writer = writers[layout.VAL if held else layout.TRAIN]
                writer.add(repo_name, 1, text + END_OF_TEXT, source.name, epoch, language)


def run_format(ctx: StageContext) -> None:
    """Write data/docs/{train,val}/: the training stream of every source of the mixture."""
    params = ctx.section("format", FormatConfig)
    mixture = ctx.section("mixture", MixtureConfig)
    seed = int(ctx.cfg.seed)
    streamed = mixture.ordered()
    for name, source in streamed:  # a misnamed table fails before any work
        if not source.is_code:
            check_table(ctx, name, source)
    code, code_metrics = None, {}
    for name, source in streamed:
        if source.is_code:
            code, code_metrics = open_code(ctx, name, source, params, mixture.language_caps, seed)
    held_out, code_repos = (code.held_out, set(code.sizes)) if code else (set(), set())
    texts = {name: open_source(ctx, name, source, seed, params.val_fraction, held_out, code_repos)
             for name, source in streamed if not source.is_code}
    rendering = Rendering(params.metadata_probability, params.fim, params.max_doc_bytes)

    dropped: dict[str, Counter[str]] = {name: Counter() for name in texts}
    with atomic_output(ctx.output(layout.DOCS)) as tmp:
        writers = {split: SplitWriter(tmp / split, split, params.docs_per_shard) for split in layout.SPLITS}
        for epoch in range(passes(source.epochs for _, source in streamed)):
            for name, _ in streamed:
                if name in texts:
                    write_text_epoch(texts[name], epoch, writers, dropped[name])
                    continue
                assert code is not None
                for repo_name, held, n_files, text in code.documents(epoch, rendering):
                    writers[layout.VAL if held else layout.TRAIN].add(repo_name, n_files, text, name, epoch)
        for writer in writers.values():
            writer.close()

    train, val = writers[layout.TRAIN], writers[layout.VAL]
    counts = code.counts if code else None
    metrics = {
        **code_metrics,
        "train_docs": train.docs,
        "val_docs": val.docs,
        "train_bytes": train.bytes,
        "val_bytes": val.bytes,
        "files": counts.files if counts else 0,
        "repos_split": counts.repos_split if counts else 0,
        "fim_docs": counts.fim_docs if counts else 0,
        "fim_files": dict(counts.fim_files) if counts else {PSM: 0, SPM: 0},
        "sources": {name: {"epochs": source.epochs, "train_docs": train.source_docs[name],
                           "val_docs": val.source_docs[name], "train_bytes": train.source_bytes[name],
                           "val_bytes": val.source_bytes[name],
                           **({"dropped": {reason: dropped[name][reason] for reason in ("empty_text", "null_text")}}
                              if name in dropped else {})}
                    for name, source in streamed},
    }
    log.info("wrote %d train and %d val documents of %d sources -> %s", train.docs, val.docs, len(streamed),
             ctx.output(layout.DOCS))
    ctx.write_metrics(metrics)
