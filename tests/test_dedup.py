"""The dedup stage: exact blob_id dedup across shards against a plain-Python reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from starbuild.core import layout
from starbuild.core.schemas import DEDUP_CLUSTERS, RAW
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageError
from starbuild.dedup.stage import run_dedup
from tests.factories import file_bytes, raw_row, with_overrides, write_table


def day(year: int, month: int = 1) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def corpus() -> list[list[dict]]:
    """Three shards, sorted by (repo_name, path), with duplicates within and across shards."""
    rows = [
        # blob A: the permissive copy with the latest date wins over a newer unlicensed one.
        raw_row("a/one", "lib/a.py", "A = 1\n", license_type="no_license", revision_date=day(2024)),
        raw_row("a/one", "lib/b.py", "B = 2\n", revision_date=None),
        raw_row("a/one", "lib/u1.py", "unique 1\n"),
        raw_row("b/two", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2020)),
        raw_row("b/two", "b.py", "B = 2\n", revision_date=day(2021)),
        # blob C: no_license outranks non_permissive whatever the names say.
        raw_row("b/two", "c.py", "C = 3\n", license_type="non_permissive", revision_date=day(2023)),
        raw_row("c/three", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2023)),
        raw_row("c/three", "c.py", "C = 3\n", license_type="no_license", revision_date=day(2023)),
        raw_row("c/three", "d1.py", "D = 4\n", revision_date=day(2022, 5)),
        raw_row("c/three", "d2.py", "D = 4\n", revision_date=day(2022, 5)),
        raw_row("d/four", "d.py", "D = 4\n", revision_date=day(2022, 5)),
        raw_row("d/four", "u2.py", "unique 2\n"),
        raw_row("e/five", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2023)),
    ]
    return [rows[:5], rows[5:11], rows[11:]]


def survivor_key(row: dict) -> tuple:
    """The reference priority: permissive > no_license > other, latest dates (nulls last), repo_name, path."""
    date, visit = row["revision_date"], row["visit_date"]
    return (
        {"permissive": 0, "no_license": 1}.get(row["license_type"], 2),
        date is None,
        -(date.timestamp() if date else 0),
        visit is None,
        -(visit.timestamp() if visit else 0),
        row["repo_name"],
        row["path"],
    )


def reference(shards: list[list[dict]]) -> tuple[set[tuple], list[dict]]:
    """(repo_name, path) of the survivors, and the expected cluster rows."""
    by_blob: dict[str, list[dict]] = {}
    for row in (row for shard in shards for row in shard):
        by_blob.setdefault(row["blob_id"], []).append(row)
    kept, cluster_rows = set(), []
    for blob, members in by_blob.items():
        winner = min(members, key=survivor_key)
        kept.add((winner["repo_name"], winner["path"]))
        if len(members) > 1:
            cluster_rows += [
                {
                    "blob_id": blob,
                    "repo_name": m["repo_name"],
                    "path": m["path"],
                    "kept": m is winner,
                    "cluster_size": len(members),
                }
                for m in members
            ]
    cluster_rows.sort(key=lambda r: (r["blob_id"], r["repo_name"], r["path"]))
    return kept, cluster_rows


def test_keeps_one_row_per_blob_by_priority(tmp_path, make_context):
    shards = corpus()
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup"))

    kept, cluster_rows = reference(shards)
    out = list_shards(tmp_path / layout.DEDUP)
    assert [p.name for p in out] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for rows, path in zip(shards, out, strict=True):
        table = read_shard(path)
        assert table.schema.equals(RAW)
        # Shard i holds the survivors of input shard i, in input order.
        assert table.to_pylist() == [r for r in rows if (r["repo_name"], r["path"]) in kept]
    survivors = {(r["repo_name"], r["path"]) for p in out for r in read_shard(p).to_pylist()}
    assert survivors == kept
    assert ("c/three", "a.py") in kept and ("b/two", "b.py") in kept and ("c/three", "c.py") in kept
    assert ("c/three", "d1.py") in kept

    clusters = pq.read_table(tmp_path / layout.DEDUP_CLUSTERS / "part-00000.parquet")
    assert clusters.schema.equals(DEDUP_CLUSTERS)
    assert clusters.to_pylist() == cluster_rows

    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    n_in = sum(map(len, shards))
    assert metrics == {
        "input_files": n_in,
        "kept_files": len(kept),
        "duplicate_files": n_in - len(kept),
        "clusters": 4,
        "dropped": {"exact_duplicate": n_in - len(kept)},
    }


def test_deterministic(tmp_path, make_context):
    write_table(tmp_path / layout.FILTERED, corpus())

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.DEDUP, layout.DEDUP_CLUSTERS, layout.metrics_file("dedup"))

    run_dedup(make_context("dedup"))
    first = snapshot()
    run_dedup(make_context("dedup"))
    assert snapshot() == first
    assert not list(tmp_path.glob(".tmp*")) and not list((tmp_path / "data").glob(".tmp*"))


def test_no_duplicates_keeps_everything(tmp_path, make_context):
    shard = [raw_row("r", f"f{i}.py", f"x = {i}\n") for i in range(5)]
    write_table(tmp_path / layout.FILTERED, [shard, []])
    run_dedup(make_context("dedup"))
    assert read_shard(tmp_path / layout.DEDUP / "part-00000.parquet").to_pylist() == shard
    assert read_shard(tmp_path / layout.DEDUP / "part-00001.parquet").num_rows == 0
    assert pq.read_table(tmp_path / layout.DEDUP_CLUSTERS / "part-00000.parquet").num_rows == 0
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["dropped"] == {"exact_duplicate": 0} and metrics["clusters"] == 0


def test_bad_method_and_missing_input(tmp_path, make_context, smoke_cfg):
    with pytest.raises(StageError, match="dvc repro filter"):
        run_dedup(make_context("dedup"))
    write_table(tmp_path / layout.FILTERED, corpus())
    cfg = with_overrides(smoke_cfg, dedup={"method": "minhash"})
    with pytest.raises(StageError, match="conf/dedup"):
        run_dedup(make_context("dedup", cfg))
