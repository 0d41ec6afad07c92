"""Exact dedup in DuckDB: repositories by root directory, then files by blob_id, one copy kept by priority.

Both levels keep the copy The Stack v2 kept (spec §3.1): license type permissive, then no_license, then
non_permissive; then more stars, more forks, the latest revision date and the latest visit date, each
missing value ranking last; repo_name and path break the remaining ties, so the choice never depends on
the order of the shards. A repository's rank uses the best of its files' license types and its own
popularity and dates. Rows without a blob_id (or directory_id) are never duplicates.

Memory: DuckDB holds one narrow row per file (ids, names and ranking columns, no content) and spills to
its temp directory past its memory limit.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

# The survivor order of §3.1, shared by every level (and by near dedup's clusters).
PRIORITY = """license_rank, stars DESC NULLS LAST, forks DESC NULLS LAST, revision_date DESC NULLS LAST,
    visit_date DESC NULLS LAST"""

ROWS_SQL = """
CREATE TABLE rows AS
SELECT
    list_position($shards, filename) - 1 AS shard,
    file_row_number AS row_idx,
    blob_id, directory_id, repo_name, path, language,
    CASE license_type WHEN 'permissive' THEN 0 WHEN 'no_license' THEN 1 ELSE 2 END AS license_rank,
    star_events_count AS stars, fork_events_count AS forks, revision_date, visit_date
FROM read_parquet($shards, filename = true, file_row_number = true)
"""

# One row per (repository, root directory): which copy of each directory survives.
REPOS_SQL = f"""
CREATE TABLE repos AS
WITH repo AS (
    SELECT repo_name, directory_id, min(license_rank) AS license_rank, max(stars) AS stars, max(forks) AS forks,
        max(revision_date) AS revision_date, max(visit_date) AS visit_date
    FROM rows GROUP BY repo_name, directory_id
)
SELECT
    repo_name, directory_id,
    NOT $enabled OR directory_id IS NULL OR row_number() OVER same_tree = 1 AS repo_kept,
    count(*) OVER (PARTITION BY directory_id) AS repo_copies
FROM repo
WINDOW same_tree AS (PARTITION BY directory_id ORDER BY {PRIORITY}, repo_name)
"""

# Every row with its repository's fate, and which row of each blob survives among the kept repositories.
DECISIONS_SQL = f"""
CREATE TABLE decisions AS
WITH joined AS (
    SELECT r.*, p.repo_kept, p.repo_copies,
        CASE WHEN r.blob_id IS NULL OR NOT p.repo_kept THEN 'row:' || r.shard || ':' || r.row_idx
             ELSE r.blob_id END AS blob_key
    FROM rows r JOIN repos p ON r.repo_name IS NOT DISTINCT FROM p.repo_name
        AND r.directory_id IS NOT DISTINCT FROM p.directory_id
)
SELECT
    *,
    repo_kept AND (NOT $enabled OR row_number() OVER same_blob = 1) AS blob_kept,
    count(*) OVER (PARTITION BY blob_key) AS blob_copies,
    true AS near_kept
FROM joined
WINDOW same_blob AS (PARTITION BY blob_key ORDER BY {PRIORITY}, repo_name, path, shard, row_idx)
"""

KEPT_ROWS_SQL = """
SELECT row_idx FROM decisions WHERE shard = $shard AND repo_kept AND blob_kept AND near_kept ORDER BY row_idx
"""

# The exact levels of the cluster table: every member of a duplicated directory or blob.
EXACT_CLUSTERS_SQL = """
SELECT 'repo:' || directory_id AS cluster_id, 'exact_repo' AS reason, blob_id, repo_name, path,
    repo_kept AS kept, repo_copies AS cluster_size
FROM decisions WHERE $repo_enabled AND directory_id IS NOT NULL AND repo_copies > 1
UNION ALL
SELECT 'blob:' || blob_id, 'exact_blob', blob_id, repo_name, path, blob_kept, blob_copies
FROM decisions WHERE $blob_enabled AND repo_kept AND blob_id IS NOT NULL AND blob_copies > 1
"""


def decide(con: duckdb.DuckDBPyConnection, shards: list[Path], exact_repo: bool, exact_blob: bool) -> None:
    """Build the `decisions` table: every input row, where it sits and whether each level keeps it."""
    con.execute(ROWS_SQL, {"shards": [str(shard) for shard in shards]})
    con.execute(REPOS_SQL, {"enabled": exact_repo})
    con.execute(DECISIONS_SQL, {"enabled": exact_blob})


def kept_rows(con: duckdb.DuckDBPyConnection, shard_index: int) -> list[int]:
    """Row numbers of shard `shard_index` that survive every level, ascending."""
    rows = con.execute(KEPT_ROWS_SQL, {"shard": shard_index}).fetchall()
    return [row_idx for (row_idx,) in rows]

