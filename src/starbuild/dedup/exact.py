"""Exact dedup on blob_id across all shards in DuckDB: which row each blob keeps, and its clusters.

The survivor of a blob follows the-stack-v2's priority where our rows carry the column: license
type permissive, then no_license, then non_permissive, then the latest revision date and the latest
visit date (nulls last); stars and forks are not in the table yet. repo_name, path, then the shard
position break the remaining ties, so the choice never depends on scan order. Rows without a
blob_id are never duplicates.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from starbuild.core import schemas

# One row per input row: where it sits, whether it survives, and its cluster's size.
DECISIONS_SQL = """
CREATE TABLE decisions AS
WITH rows AS (
    SELECT
        list_position($shards, filename) - 1 AS shard,
        file_row_number AS row_idx,
        coalesce(blob_id, 'null:' || filename || ':' || file_row_number) AS dedup_key,
        blob_id, repo_name, path, license_type, revision_date, visit_date
    FROM read_parquet($shards, filename = true, file_row_number = true)
), ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY dedup_key
            ORDER BY CASE license_type WHEN 'permissive' THEN 0 WHEN 'no_license' THEN 1 ELSE 2 END,
                revision_date DESC NULLS LAST, visit_date DESC NULLS LAST, repo_name, path, shard, row_idx
        ) AS rank,
        count(*) OVER (PARTITION BY dedup_key) AS cluster_size
    FROM rows
)
SELECT shard, row_idx, blob_id, repo_name, path, rank = 1 AS kept, cluster_size FROM ranked
"""

KEPT_ROWS_SQL = "SELECT row_idx FROM decisions WHERE shard = $shard AND kept ORDER BY row_idx"

CLUSTERS_SQL = """
SELECT blob_id, repo_name, path, kept, cluster_size
FROM decisions
WHERE cluster_size > 1
ORDER BY blob_id, repo_name, path, shard, row_idx
"""

COUNTS_SQL = """
SELECT
    count(shard) AS input_files,
    count(*) FILTER (WHERE kept) AS kept_files,
    count(*) FILTER (WHERE kept AND cluster_size > 1) AS clusters
FROM decisions
"""


def decide(con: duckdb.DuckDBPyConnection, shards: list[Path]) -> None:
    """Build the `decisions` table over every shard (DuckDB spills to its temp directory)."""
    con.execute(DECISIONS_SQL, {"shards": [str(shard) for shard in shards]})


def kept_rows(con: duckdb.DuckDBPyConnection, shard_index: int) -> list[int]:
    """Row numbers of shard `shard_index` that survive, ascending."""
    rows = con.execute(KEPT_ROWS_SQL, {"shard": shard_index}).fetchall()
    return [row_idx for (row_idx,) in rows]


def clusters(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every member of every cluster of two or more rows, as schemas.DEDUP_CLUSTERS."""
    table = con.execute(CLUSTERS_SQL).to_arrow_table()
    return table.cast(schemas.DEDUP_CLUSTERS)


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """input_files (rows matched to a shard), kept_files and clusters over the whole table."""
    result = con.execute(COUNTS_SQL).to_arrow_table().to_pylist()[0]
    return {key: int(value) for key, value in result.items()}
