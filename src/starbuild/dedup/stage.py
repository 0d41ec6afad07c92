"""The `dedup` stage: keep one row per blob_id across all shards, keeping shard order."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, read_shard, shard_name, write_shard
from starbuild.core.stage import StageContext
from starbuild.dedup.exact import clusters, counts, decide, kept_rows

log = logging.getLogger(__name__)

METHODS = ("exact",)


@dataclass(frozen=True)
class DedupConfig:
    """The `dedup` config section."""

    method: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method '{self.method}' is unknown; use one of {', '.join(METHODS)}")


def run_dedup(ctx: StageContext) -> None:
    """Write data/dedup/ (shard i = the surviving rows of filtered shard i) and the cluster table."""
    ctx.section("dedup", DedupConfig)
    shards = ctx.input_shards(layout.FILTERED, schemas.FILTERED)
    log.info("deduplicating %d shards from %s", len(shards), layout.FILTERED)

    # An in-memory database would spill to ./.tmp; keep spill files out of the repository.
    with (
        tempfile.TemporaryDirectory(prefix="starbuild-dedup-") as spill,
        duckdb.connect(config={"temp_directory": spill}) as con,
    ):
        decide(con, shards)
        totals = counts(con)
        expected = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
        if totals["input_files"] != expected:
            raise RuntimeError(f"dedup saw {totals['input_files']} rows of {expected}; shard paths mismatch")
        with atomic_output(ctx.output(layout.DEDUP)) as tmp:
            for index, shard in enumerate(tqdm(shards, desc="dedup", unit="shard")):
                keep = pa.array(kept_rows(con, index), pa.int64())
                write_shard(read_shard(shard).take(keep), tmp / shard.name)
        with atomic_output(ctx.output(layout.DEDUP_CLUSTERS)) as tmp:
            write_shard(clusters(con), tmp / shard_name(0))

    duplicates = totals["input_files"] - totals["kept_files"]
    metrics = {
        **totals,
        "duplicate_files": duplicates,
        "dropped": {"exact_duplicate": duplicates},
    }
    log.info(
        "kept %d of %d files (%d clusters) -> %s, %s",
        totals["kept_files"],
        totals["input_files"],
        totals["clusters"],
        ctx.output(layout.DEDUP),
        ctx.output(layout.DEDUP_CLUSTERS),
    )
    ctx.write_metrics(metrics)
