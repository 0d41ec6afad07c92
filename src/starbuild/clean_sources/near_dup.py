"""Near dedup of one non-code source with the code's MinHash-LSH (starbuild.dedup.near), steps 1-4:

1. band keys per shard (`near.write_band_keys` on the `text` column), one executor task per shard;
2. buckets in parts by band key (`near.write_part_edges`): each row gets an edge to its bucket's smallest id;
3. optional exact-Jaccard check of the edges (`dedup.verify`);
4. connected components (`near.components`): a component's root is its smallest id.

A row's id is its key fields then its position in the source (sources.sort_keys), so the root, the member
kept, is the row with the smallest key (ties, rows with the same key, by input order); every other member
is removed. The source's `group` column (a notebook's format) joins the bucket, as dedup's language does.
Memory holds one shard's texts in a task, plus the edges and components (rows that have a candidate).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from starbuild.clean_sources.sources import TEXT, Source, position, sort_keys
from starbuild.core.shards import read_shard
from starbuild.dedup import near
from starbuild.dedup.minhash import MinHashParams
from starbuild.executors import Executor

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _SignShard:
    """Picklable worker: write one shard's band keys; return how many rows had a signature."""

    source: Source
    params: MinHashParams
    parts: int

    def __call__(self, task: tuple[Path, int, Path]) -> int:
        shard, first_row, out = task
        columns = list(dict.fromkeys([*self.source.key, *([self.source.group] if self.source.group else [])]))
        table = read_shard(shard, columns=columns)
        docs = sort_keys(table, self.source, first_row)
        groups = ([value or "" for value in table.column(self.source.group).to_pylist()] if self.source.group
                  else [""] * table.num_rows)
        task_rows = list(range(table.num_rows))
        return near.write_band_keys(near.BandTask(shard, task_rows, docs, groups, out, self.params, self.parts,
                                                  column=TEXT))


@dataclass(frozen=True)
class NearDuplicates:
    """What near dedup found in a source: the positions of the rows it removes, and its counts."""

    removed: frozenset[int]
    counts: dict[str, Any]


def row_counts(shards: list[Path]) -> list[int]:
    """Each shard's number of rows (from its Parquet footer)."""
    return [pq.ParquetFile(shard).metadata.num_rows for shard in shards]


def starts_of(counts: list[int]) -> list[int]:
    """The position in the source of the first row of each shard of `counts` rows."""
    return list(itertools.accumulate(counts[:-1], initial=0)) if counts else []


def first_rows(shards: list[Path]) -> list[int]:
    """The position in the source of each shard's first row."""
    return starts_of(row_counts(shards))


def texts_of(shards: list[Path], docs: set[str]) -> dict[str, str]:
    """The text of every id in `docs`, read shard by shard (the ids' positions say which rows)."""
    wanted = sorted(docs, key=position)
    found: dict[str, str] = {}
    counts = row_counts(shards)
    for shard, first, rows in zip(shards, starts_of(counts), counts, strict=True):
        members = [doc for doc in wanted if first <= position(doc) < first + rows]
        if members:
            texts = read_shard(shard, columns=[TEXT]).column(TEXT).to_pylist()
            found.update({doc: texts[position(doc) - first] or "" for doc in members})
    return found


def near_duplicates(source: Source, shards: list[Path], params: MinHashParams, verify: bool, executor: Executor,
                    work: Path) -> NearDuplicates:
    """The rows of `source` (its shards in order) that near dedup removes; work files go under `work`."""
    work = work / source.name
    work.mkdir(parents=True, exist_ok=True)
    counts = row_counts(shards)
    starts = starts_of(counts)
    # A shard without rows has nothing to sign (and no band file).
    tasks = [(shard, start, work / f"bands-{index:05d}.parquet") for index, (shard, start, rows)
             in enumerate(zip(shards, starts, counts, strict=True)) if rows]
    bands, _rows = params.bands_rows()
    parts = near.bucket_parts(len(tasks), sum(counts) * bands)
    signed = executor.map(_SignShard(source, params, parts), tasks, desc=f"minhash {source.name}",
                          labels=[str(shard) for shard, _, _ in tasks], in_threads=True)
    buckets = [near.BucketTask([out for _, _, out in tasks], part, work / f"edges-{part:05d}.parquet")
               for part in range(parts if tasks else 0)]
    executor.map(near.write_part_edges, buckets, desc=f"buckets {source.name}",
                 labels=[f"bucket part {b.part}" for b in buckets], in_threads=True)
    with duckdb.connect(config={"temp_directory": str(work / "spill")}) as con:
        edges = near.candidate_edges(con, [b.out for b in buckets])
    candidates = len(edges)
    if verify and edges:
        edges = near.verified(edges, texts_of(shards, {doc for edge in edges for doc in edge}), params)
    roots = near.components(edges)
    removed = frozenset(position(doc) for doc, root in roots.items() if doc != root)
    log.info("%s near dedup: %d candidate pairs, %d rows in %d clusters, %d removed", source.name, candidates,
             len(roots), len(set(roots.values())), len(removed))
    return NearDuplicates(removed, {"signed_rows": sum(signed), "candidate_pairs": candidates,
                                    "verified_pairs": len(edges) if verify else None,
                                    "clusters": len(set(roots.values()))})
