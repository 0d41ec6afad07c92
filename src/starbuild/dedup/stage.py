"""The `dedup` stage: exact (repository, file) then near (MinHash-LSH) dedup, every removal explained.

Output shard i holds the surviving rows of filtered shard i in their order; `data/dedup_clusters/` lists
every member of every cluster with its reason (`exact_repo`, `exact_blob`, `near_dup`) and survivor flag.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, read_shard, shard_name, write_shard
from starbuild.core.stage import StageContext
from starbuild.dedup import exact, near
from starbuild.dedup.minhash import MinHashParams
from starbuild.executors import make_executor
from starbuild.work_cache import WorkCache

log = logging.getLogger(__name__)

REASONS = ("exact_repo", "exact_blob", "near_dup")

# Clusters per (reason, size), size = member rows of the cluster table (the survivor included): for exact_repo
# that is every file of every copy of the directory, not `cluster_size` (the number of repository copies).
CLUSTER_SIZES_SQL = """
SELECT reason, size, count(*) AS clusters
FROM (SELECT reason, cluster_id, count(*) AS size FROM cluster_rows GROUP BY reason, cluster_id)
GROUP BY reason, size ORDER BY reason, size
"""


@dataclass(frozen=True)
class DedupConfig:
    """The `dedup` config section (conf/dedup/); MinHash parameters are checked by MinHashParams."""

    # Keep one repository per root directory (The Stack v2's repository-level exact dedup).
    exact_repo: bool
    # Keep one file per blob_id.
    exact_blob: bool
    # MinHash-LSH near dedup of what the exact levels keep.
    near_dup: bool
    threshold: float
    num_perm: int
    ngram: int
    min_tokens: int
    seed: int
    # Compare files only within one language, as BigCode ran it per language.
    per_language: bool
    # Keep a candidate pair only if its exact shingle Jaccard reaches the threshold.
    verify: bool

    def __post_init__(self) -> None:
        self.minhash()

    def minhash(self) -> MinHashParams:
        """The MinHash parameters (which validate themselves)."""
        return MinHashParams(num_perm=self.num_perm, ngram=self.ngram, min_tokens=self.min_tokens,
                             threshold=self.threshold, seed=self.seed)


def run_dedup(ctx: StageContext) -> None:
    """Write data/dedup/ (shard i = the surviving rows of filtered shard i) and the cluster table."""
    cfg = ctx.section("dedup", DedupConfig)
    shards = ctx.input_shards(layout.FILTERED, schemas.FILTERED)
    log.info("deduplicating %d shards from %s", len(shards), layout.FILTERED)
    # An in-memory database would spill to ./.tmp; keep spill and band files out of the repository.
    with (
        tempfile.TemporaryDirectory(prefix="starbuild-dedup-") as work,
        duckdb.connect(config={"temp_directory": str(Path(work) / "spill")}) as con,
    ):
        exact.decide(con, shards, cfg.exact_repo, cfg.exact_blob)
        cache = WorkCache.for_stage(ctx.name, ctx.root, ctx.cfg)
        near_metrics = near_dedup(ctx, con, cfg, shards, Path(work), cache) if cfg.near_dup else {}
        expected = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
        totals = counts(con)
        if totals["input_files"] != expected:
            raise RuntimeError(f"dedup saw {totals['input_files']} rows of {expected}; shard paths mismatch")
        with atomic_output(ctx.output(layout.DEDUP)) as tmp:
            tasks = [(shard, exact.kept_rows(con, index), tmp / shard.name) for index, shard in enumerate(shards)]
            make_executor(ctx.cfg.executor).map(write_kept_rows, tasks, desc="dedup",
                                                labels=[shard.name for shard in shards], in_threads=True)
        clusters = cluster_table(con, cfg)
        with atomic_output(ctx.output(layout.DEDUP_CLUSTERS)) as tmp:
            write_shard(clusters, tmp / shard_name(0))
        cache.finish()
        metrics = {**totals, **cluster_counts(con, cfg), **cluster_sizes(con, clusters), "near": near_metrics}
    log.info("kept %d of %d files -> %s (why each went: %s)", metrics["kept_files"], metrics["input_files"],
             ctx.output(layout.DEDUP), ctx.output(layout.DEDUP_CLUSTERS))
    ctx.write_metrics(metrics)


def write_kept_rows(task: tuple[Path, list[int], Path]) -> None:
    """Write rows `rows` (ascending) of shard `src` to `dst`: one executor task."""
    src, rows, dst = task
    write_shard(read_shard(src).take(pa.array(rows, pa.int64())), dst)


def near_dedup(ctx: StageContext, con: duckdb.DuckDBPyConnection, cfg: DedupConfig, shards: list[Path],
               work: Path, cache: WorkCache) -> dict[str, Any]:
    """Steps 1–5 of `near`: signatures per shard (those of an interrupted run taken from `cache`), buckets in
    parts by band key, optional check, components, survivors."""
    params = cfg.minhash()
    bands, rows = params.bands_rows()
    tasks = near.band_tasks(con, shards, work, params, cfg.per_language)
    # Which rows of a shard are signed, and under which ids, follows from the exact dedup of all shards.
    selection = [json.dumps([t.rows, t.docs, t.groups, t.parts]).encode() for t in tasks] if cache.directory else None
    signed = cache.map(make_executor(ctx.cfg.executor), near.write_band_keys, tasks,
                       cache.keys([t.shard for t in tasks], selection), outputs=[t.out for t in tasks],
                       desc="minhash", labels=[t.shard.name for t in tasks], in_threads=True)
    # Step 2, the buckets, in parts by band key: each part an executor task over every band file.
    parts = tasks[0].parts if tasks else 0
    band_files = [t.out for t in tasks]
    buckets = [near.BucketTask(band_files, part, work / f"edges-{part:05d}.parquet") for part in range(parts)]
    make_executor(ctx.cfg.executor).map(near.write_part_edges, buckets, desc="buckets",
                                        labels=[f"bucket part {b.part}" for b in buckets], in_threads=True)
    edges = near.candidate_edges(con, [b.out for b in buckets])
    candidates = len(edges)
    if cfg.verify and edges:
        texts = near.texts_of(con, shards, {doc for edge in edges for doc in edge})
        edges = near.verified(edges, texts, params)
    roots = near.components(edges)
    near.mark_survivors(con, roots)
    log.info("near dedup: %d candidate pairs in %d bands x %d rows, %d files in %d clusters", candidates, bands,
             rows, len(roots), len(set(roots.values())))
    return {"bands": bands, "rows": rows, "signed_files": sum(signed), "candidate_pairs": candidates,
            "verified_pairs": len(edges) if cfg.verify else None}


def cluster_table(con: duckdb.DuckDBPyConnection, cfg: DedupConfig) -> pa.Table:
    """Every member of every cluster, ordered by reason, cluster and member: schemas.DEDUP_CLUSTERS."""
    parts = [exact.EXACT_CLUSTERS_SQL]
    if cfg.near_dup:
        parts.append(near.NEAR_CLUSTERS_SQL)
    query = (f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY "
             "list_position(['exact_repo', 'exact_blob', 'near_dup'], reason), cluster_id, repo_name, path, blob_id")
    table = con.execute(query, {"repo_enabled": cfg.exact_repo, "blob_enabled": cfg.exact_blob}).to_arrow_table()
    return table.cast(schemas.DEDUP_CLUSTERS)


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """input_files, kept_files and the files each level removed."""
    row = con.execute("""
        SELECT count(*), count(*) FILTER (WHERE repo_kept AND blob_kept AND near_kept),
            count(*) FILTER (WHERE NOT repo_kept), count(*) FILTER (WHERE repo_kept AND NOT blob_kept),
            count(*) FILTER (WHERE repo_kept AND blob_kept AND NOT near_kept)
        FROM decisions""").fetchone()
    assert row is not None
    total, kept, repo, blob, near_removed = (int(v) for v in row)
    return {"input_files": total, "kept_files": kept, "duplicate_files": total - kept,
            "dropped": {"exact_repo": repo, "exact_blob": blob, "near_dup": near_removed}}


def cluster_counts(con: duckdb.DuckDBPyConnection, cfg: DedupConfig) -> dict[str, dict[str, int]]:
    """How many clusters each level found."""
    found = dict.fromkeys(REASONS, 0)
    found["exact_repo"] = int(con.execute(
        "SELECT count(DISTINCT directory_id) FROM decisions WHERE $on AND directory_id IS NOT NULL "
        "AND repo_copies > 1", {"on": cfg.exact_repo}).fetchone()[0])
    found["exact_blob"] = int(con.execute(
        "SELECT count(DISTINCT blob_id) FROM decisions WHERE $on AND repo_kept AND blob_copies > 1 "
        "AND blob_id IS NOT NULL", {"on": cfg.exact_blob}).fetchone()[0])
    if cfg.near_dup:
        found["near_dup"] = int(con.execute("SELECT count(DISTINCT root) FROM near").fetchone()[0])
    return {"clusters": found}


def cluster_sizes(con: duckdb.DuckDBPyConnection, clusters: pa.Table) -> dict[str, dict[str, dict[str, int]]]:
    """How many clusters of each size each level found, from the cluster table's rows, sizes ascending."""
    sizes: dict[str, dict[str, int]] = {reason: {} for reason in REASONS}
    # The table is already in memory (it was just written); DuckDB scans it in place, no second pass over data.
    con.register("cluster_rows", clusters)
    try:
        for reason, size, n in con.execute(CLUSTER_SIZES_SQL).fetchall():
            # Decimal-string keys for JSON, inserted in numeric order; write_metrics' sort_keys then orders the
            # file's keys as strings ("10" before "2"): still byte-stable, readers sort by int(size).
            sizes[reason][str(size)] = int(n)
    finally:
        con.unregister("cluster_rows")
    return {"cluster_sizes": sizes}
