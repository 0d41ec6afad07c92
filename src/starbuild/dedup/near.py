"""Near dedup as The Stack v2 did it: MinHash signatures, LSH band buckets, connected components.

Steps, each bounded in memory:
1. Signatures, one executor task per input shard: each task reads only its surviving rows' `content`,
   computes every file's MinHash signature and writes its band keys (doc, group, band, key) to a Parquet
   file on disk, one row group per part (key mod parts). A task holds one shard's texts; nothing else does.
2. Buckets in DuckDB, one executor task per part: files sharing (group, band, key) are candidates; each gets
   one edge to its bucket's smallest doc (BigCode's rule), so a bucket of n files gives n-1 edges, not n².
   A bucket lies wholly in its key's part, and a task reads only its part's row groups of every band file;
   DuckDB sorts and spills. The parts' edges are then merged, distinct and sorted, whatever the part count.
3. Optional check (`dedup.verify`): an edge stays only if the exact Jaccard of the two files' shingle sets
   reaches the threshold; texts are read shard by shard for the docs on edges only. Only the star edges are
   checked, so two similar files whose every shared bucket also holds a smaller dissimilar file lose their
   link (rare; the price of n-1 edges per bucket instead of n²).
4. Components: union-find over the edges alone (memory ∝ files that have a candidate, not all files);
   a component's id is its smallest doc, so ids never depend on the shard order.
5. Survivors: one per component by the exact levels' priority (license type, stars, forks, dates), in DuckDB.

A doc is `blob_id:repo_name:path` (unique, and independent of where the row sits). Chains join: if A~B and
B~C, A, B and C form one cluster even when A and C are not similar, as BigCode's connected components did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from starbuild.dedup.exact import PRIORITY
from starbuild.dedup.minhash import (
    MinHashParams,
    band_keys,
    jaccard,
    permutations,
    shingle_table,
    shingles,
    signature_matrix,
)

BANDS_SCHEMA = pa.schema([("doc", pa.string()), ("grp", pa.string()), ("band", pa.int16()), ("key", pa.int64()),
                          ("part", pa.int32())])
# Buckets are split into parts by band key, each part bucketed by one executor task: about one part per
# KEYS_PER_PART band keys (a part is one DuckDB window over its keys), at most one a shard and MAX_BUCKET_PARTS.
KEYS_PER_PART = 2_000_000
MAX_BUCKET_PARTS = 64

# The rows near dedup looks at: survivors of the exact levels, with their doc key and group.
CANDIDATES_SQL = """
SELECT shard, row_idx, blob_id || ':' || repo_name || ':' || path AS doc,
    CASE WHEN $per_language THEN coalesce(language, '') ELSE '' END AS grp
FROM decisions WHERE repo_kept AND blob_kept AND blob_id IS NOT NULL
ORDER BY shard, row_idx
"""

# One part of the buckets: a bucket (grp, band, key) lies wholly in the part of its key.
PART_EDGES_SQL = """
COPY (
    SELECT DISTINCT doc AS a, first_doc AS b
    FROM (SELECT doc, min(doc) OVER (PARTITION BY grp, band, key) AS first_doc
          FROM read_parquet($files) WHERE part = $part)
    WHERE doc <> first_doc
) TO '{out}' (FORMAT parquet)
"""

EDGES_SQL = """
CREATE TABLE edges AS SELECT DISTINCT a, b FROM read_parquet($files) ORDER BY a, b
"""

SURVIVORS_SQL = f"""
CREATE TABLE near AS
SELECT d.shard, d.row_idx, d.blob_id, d.repo_name, d.path, c.root,
    row_number() OVER (PARTITION BY c.root ORDER BY {PRIORITY}, d.repo_name, d.path, d.shard, d.row_idx) = 1 AS kept,
    count(*) OVER (PARTITION BY c.root) AS size
FROM decisions d JOIN components c ON c.doc = d.blob_id || ':' || d.repo_name || ':' || d.path
WHERE d.repo_kept AND d.blob_kept
"""

MARK_SQL = """
UPDATE decisions SET near_kept = near.kept FROM near
WHERE decisions.shard = near.shard AND decisions.row_idx = near.row_idx
"""

NEAR_CLUSTERS_SQL = """
SELECT 'near:' || root AS cluster_id, 'near_dup' AS reason, blob_id, repo_name, path, kept,
    size AS cluster_size
FROM near
"""


@dataclass(frozen=True)
class BandTask:
    """One shard's share of step 1: which rows to sign and where their band keys go."""

    shard: Path
    rows: list[int]
    docs: list[str]
    groups: list[str]
    out: Path
    params: MinHashParams
    # Band keys are written in `parts` row groups, part = key mod parts, for the bucket tasks.
    parts: int = 1
    # The column holding the texts (the clean_sources stage signs notebooks', issues' and PRs' `text`).
    column: str = "content"


def write_band_keys(task: BandTask) -> int:
    """Sign the task's rows and write their band keys to `task.out`; return how many files had a signature."""
    texts = pq.read_table(task.shard, columns=[task.column]).column(task.column).take(pa.array(task.rows, pa.int64()))
    a, b = permutations(task.params.num_perm, task.params.seed)
    bands, rows = task.params.bands_rows()
    # The whole task is one batch: one pass of Arrow and numpy kernels, not a loop over files.
    owners, hashes = shingle_table(texts, task.params.ngram, task.params.min_tokens)
    matrix = signature_matrix(owners, hashes, len(task.rows), a, b)
    # A file with fewer than min_tokens tokens has no shingle, so no signature: never a near-duplicate.
    signed = np.flatnonzero(np.bincount(owners, minlength=len(task.rows)))
    keys = [key for index in signed for key in band_keys(matrix[index], bands, rows).tolist()]
    key_array = np.asarray(keys, dtype=np.int64)
    table = pa.table([
        pa.array(np.repeat(np.asarray(task.docs, dtype=object)[signed], bands), pa.string()),
        pa.array(np.repeat(np.asarray(task.groups, dtype=object)[signed], bands), pa.string()),
        pa.array(np.tile(np.arange(bands, dtype=np.int16), signed.size), pa.int16()),
        pa.array(key_array, pa.int64()),
        pa.array(np.mod(key_array, task.parts).astype(np.int32), pa.int32()),
    ], schema=BANDS_SCHEMA)
    # One row group per part, so a bucket task reads only its own part of every file (row-group statistics).
    table = table.sort_by([("part", "ascending")])
    with pq.ParquetWriter(task.out, BANDS_SCHEMA) as writer:
        bounds = np.searchsorted(table.column("part").to_numpy(), np.arange(task.parts + 1))
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if end > start:
                writer.write_table(table.slice(start, end - start))
    return int(signed.size)


@dataclass(frozen=True)
class BucketTask:
    """One part of step 2: the buckets of band keys with key mod parts == part, across every band file."""

    band_files: list[Path]
    part: int
    out: Path


def write_part_edges(task: BucketTask) -> None:
    """Write the candidate edges of the task's part of the buckets to `task.out`."""
    with duckdb.connect() as con:
        con.execute(PART_EDGES_SQL.format(out=str(task.out).replace("'", "''")),
                    {"files": [str(f) for f in task.band_files], "part": task.part})


def bucket_parts(shards: int, keys: int) -> int:
    """How many bucket tasks step 2 has for `shards` signed shards holding up to `keys` band keys: a small
    corpus is one part (a task costs more than its keys), a large one up to a part a shard."""
    return max(1, min(shards, MAX_BUCKET_PARTS, -(-keys // KEYS_PER_PART)))


def band_tasks(con: duckdb.DuckDBPyConnection, shards: list[Path], work: Path, params: MinHashParams,
               per_language: bool) -> list[BandTask]:
    """One BandTask per shard that has candidate rows."""
    table = con.execute(CANDIDATES_SQL, {"per_language": per_language}).to_arrow_table()
    by_shard: dict[int, tuple[list[int], list[str], list[str]]] = {}
    for shard, row, doc, group in zip(*(table.column(c).to_pylist() for c in ("shard", "row_idx", "doc", "grp")),
                                      strict=True):
        rows, docs, groups = by_shard.setdefault(shard, ([], [], []))
        rows.append(row)
        docs.append(doc)
        groups.append(group)
    parts = bucket_parts(len(by_shard), len(table) * params.bands_rows()[0])
    return [BandTask(shards[i], rows, docs, groups, work / f"bands-{i:05d}.parquet", params, parts)
            for i, (rows, docs, groups) in sorted(by_shard.items())]


def candidate_edges(con: duckdb.DuckDBPyConnection, edge_files: list[Path]) -> list[tuple[str, str]]:
    """Every (doc, smallest doc of a shared bucket) pair of the parts' edge files, sorted and distinct."""
    if not edge_files:
        con.execute("CREATE TABLE edges (a VARCHAR, b VARCHAR)")
        return []
    con.execute(EDGES_SQL, {"files": [str(f) for f in edge_files]})
    return [(a, b) for a, b in con.execute("SELECT a, b FROM edges ORDER BY a, b").fetchall()]


def verified(edges: list[tuple[str, str]], texts: dict[str, str], params: MinHashParams) -> list[tuple[str, str]]:
    """The edges whose two files' exact shingle Jaccard reaches the threshold."""
    cache: dict[str, set[str]] = {}

    def shingle_set(doc: str) -> set[str]:
        if doc not in cache:
            cache[doc] = shingles(texts[doc], params.ngram, params.min_tokens)
        return cache[doc]

    return [(a, b) for a, b in edges if jaccard(shingle_set(a), shingle_set(b)) >= params.threshold]


def texts_of(con: duckdb.DuckDBPyConnection, shards: list[Path], docs: set[str]) -> dict[str, str]:
    """The content of every doc in `docs`, read shard by shard."""
    table = con.execute(
        "SELECT shard, row_idx, blob_id || ':' || repo_name || ':' || path AS doc FROM decisions "
        "WHERE blob_id IS NOT NULL AND repo_kept AND blob_kept ORDER BY shard, row_idx").to_arrow_table()
    wanted: dict[int, list[tuple[int, str]]] = {}
    for shard, row, doc in zip(*(table.column(c).to_pylist() for c in ("shard", "row_idx", "doc")), strict=True):
        if doc in docs:
            wanted.setdefault(shard, []).append((row, doc))
    found: dict[str, str] = {}
    for shard, members in wanted.items():
        column = pq.read_table(shards[shard], columns=["content"]).column("content")
        texts = column.take(pa.array([row for row, _ in members])).to_pylist()
        found.update({doc: text or "" for (_, doc), text in zip(members, texts, strict=True)})
    return found


def components(edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each doc on an edge → its component's smallest doc (union-find over the edges only)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees shallow
            x = parent[x]
        return x

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            # The smaller root wins, so every root is its component's smallest doc whatever the edge order.
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return {doc: find(doc) for doc in sorted(parent)}


def mark_survivors(con: duckdb.DuckDBPyConnection, roots: dict[str, str]) -> None:
    """Keep one file per component by priority: set `decisions.near_kept` and build the `near` table."""
    table = pa.table({"doc": list(roots), "root": list(roots.values())},
                     schema=pa.schema([("doc", pa.string()), ("root", pa.string())]))
    con.register("components_view", table)
    con.execute("CREATE TABLE components AS SELECT * FROM components_view")
    con.unregister("components_view")
    con.execute(SURVIVORS_SQL)
    con.execute(MARK_SQL)
