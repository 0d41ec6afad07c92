"""The dedup stage: exact (repository, blob) against a plain-Python reference, near dedup, explanations."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from starbuild.core import layout
from starbuild.core.schemas import DEDUP_CLUSTERS, RAW
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageError
from starbuild.dedup.stage import run_dedup
from tests.factories import file_bytes, raw_row, stage_context, with_overrides, write_table

EXACT_ONLY = {"near_dup": False}


def day(year: int, month: int = 1) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def row(repo: str, path: str, content: str, **overrides: object) -> dict:
    """A raw row whose repository has its own root directory unless told otherwise."""
    directory = hashlib.sha1(repo.encode()).hexdigest()
    return raw_row(repo, path, content, **{"directory_id": directory, **overrides})


def corpus() -> list[list[dict]]:
    """Three shards, sorted by (repo_name, path), with duplicates within and across shards."""
    rows = [
        # blob A: the permissive copy with the latest date wins over a newer unlicensed one.
        row("a/one", "lib/a.py", "A = 1\n", license_type="no_license", revision_date=day(2024)),
        row("a/one", "lib/b.py", "B = 2\n", revision_date=None),
        row("a/one", "lib/u1.py", "unique 1\n"),
        row("b/two", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2020)),
        row("b/two", "b.py", "B = 2\n", revision_date=day(2021)),
        # blob C: no_license outranks non_permissive whatever the names say.
        row("b/two", "c.py", "C = 3\n", license_type="non_permissive", revision_date=day(2023)),
        row("c/three", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2023)),
        row("c/three", "c.py", "C = 3\n", license_type="no_license", revision_date=day(2023)),
        row("c/three", "d1.py", "D = 4\n", revision_date=day(2022, 5)),
        row("c/three", "d2.py", "D = 4\n", revision_date=day(2022, 5)),
        # blob D: more stars beat the tie on license and dates.
        row("d/four", "d.py", "D = 4\n", revision_date=day(2022, 5), star_events_count=7),
        row("d/four", "u2.py", "unique 2\n", star_events_count=7),
        row("e/five", "a.py", "A = 1\n", license_type="permissive", revision_date=day(2023)),
    ]
    return [rows[:5], rows[5:11], rows[11:]]


def survivor_key(r: dict) -> tuple:
    """The reference priority: license type, stars, forks, revision date, visit date (missing last), names."""

    def desc(value: object) -> tuple:
        number = value.timestamp() if isinstance(value, datetime) else value
        return (number is None, -(number or 0))

    return ({"permissive": 0, "no_license": 1}.get(r["license_type"], 2), *desc(r["star_events_count"]),
            *desc(r["fork_events_count"]), *desc(r["revision_date"]), *desc(r["visit_date"]), r["repo_name"], r["path"])


def reference(shards: list[list[dict]]) -> tuple[set[tuple], list[dict]]:
    """(repo_name, path) of the survivors, and the expected exact_blob cluster rows."""
    by_blob: dict[str, list[dict]] = {}
    for r in (r for shard in shards for r in shard):
        by_blob.setdefault(r["blob_id"], []).append(r)
    kept, cluster_rows = set(), []
    for blob, members in by_blob.items():
        winner = min(members, key=survivor_key)
        kept.add((winner["repo_name"], winner["path"]))
        if len(members) > 1:
            cluster_rows += [{"cluster_id": f"blob:{blob}", "reason": "exact_blob", "blob_id": blob,
                              "repo_name": m["repo_name"], "path": m["path"], "kept": m is winner,
                              "cluster_size": len(members)} for m in members]
    cluster_rows.sort(key=lambda r: (r["cluster_id"], r["repo_name"], r["path"]))
    return kept, cluster_rows


def read_clusters(root) -> list[dict]:
    table = pq.read_table(root / layout.DEDUP_CLUSTERS / "part-00000.parquet")
    assert table.schema.equals(DEDUP_CLUSTERS)
    return table.to_pylist()


def kept_rows(root) -> list[dict]:
    return [r for shard in list_shards(root / layout.DEDUP) for r in read_shard(shard).to_pylist()]


def sizes_of(clusters: list[dict]) -> dict[str, dict[str, int]]:
    """The reference cluster_sizes: clusters per member count, per reason, counted in Python."""
    members = Counter((c["reason"], c["cluster_id"]) for c in clusters)
    per_reason = {reason: Counter(n for (r, _), n in members.items() if r == reason)
                  for reason in ("exact_repo", "exact_blob", "near_dup")}
    return {reason: {str(size): n for size, n in sorted(sizes.items())} for reason, sizes in per_reason.items()}


def test_keeps_one_row_per_blob_by_priority(tmp_path, make_context, smoke_cfg):
    shards = corpus()
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup=EXACT_ONLY)))

    kept, cluster_rows = reference(shards)
    out = list_shards(tmp_path / layout.DEDUP)
    assert [p.name for p in out] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for rows, path in zip(shards, out, strict=True):
        table = read_shard(path)
        assert table.schema.equals(RAW)
        # Shard i holds the survivors of input shard i, in input order.
        assert table.to_pylist() == [r for r in rows if (r["repo_name"], r["path"]) in kept]
    assert ("c/three", "a.py") in kept and ("c/three", "c.py") in kept and ("d/four", "d.py") in kept
    assert read_clusters(tmp_path) == cluster_rows

    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    n_in = sum(map(len, shards))
    assert metrics["input_files"] == n_in and metrics["kept_files"] == len(kept)
    assert metrics["dropped"] == {"exact_repo": 0, "exact_blob": n_in - len(kept), "near_dup": 0}
    assert metrics["clusters"] == {"exact_repo": 0, "exact_blob": 4, "near_dup": 0}
    # Blobs A (4 copies), D (3), B and C (2 each), counted by the plain-Python reference.
    assert metrics["cluster_sizes"] == sizes_of(cluster_rows) == {
        "exact_repo": {}, "exact_blob": {"2": 2, "3": 1, "4": 1}, "near_dup": {}}


def test_forks_with_the_same_root_directory_keep_one_repository(tmp_path, make_context, smoke_cfg):
    tree = "f" * 40
    shards = [[
        row("fork/small", "a.py", "A = 1\n", directory_id=tree, star_events_count=1),
        row("fork/small", "b.py", "B = 2\n", directory_id=tree, star_events_count=1),
        row("orig/big", "a.py", "A = 1\n", directory_id=tree, star_events_count=50, fork_events_count=3),
        row("orig/big", "b.py", "B = 2\n", directory_id=tree, star_events_count=50, fork_events_count=3),
        row("other/repo", "a.py", "A = 1\n"),
    ]]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup=EXACT_ONLY)))
    assert [(r["repo_name"], r["path"]) for r in kept_rows(tmp_path)] == [("orig/big", "a.py"), ("orig/big", "b.py")]
    clusters = read_clusters(tmp_path)
    repo_rows = [(c["repo_name"], c["path"], c["kept"]) for c in clusters if c["reason"] == "exact_repo"]
    assert repo_rows == [("fork/small", "a.py", False), ("fork/small", "b.py", False), ("orig/big", "a.py", True),
                         ("orig/big", "b.py", True)]
    assert {c["cluster_id"] for c in clusters if c["reason"] == "exact_repo"} == {f"repo:{tree}"}
    # The fork's rows are gone at repository level; the blob level only sees the survivors.
    blob_rows = {(c["repo_name"], c["kept"]) for c in clusters if c["reason"] == "exact_blob"}
    assert blob_rows == {("orig/big", True), ("other/repo", False)}
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["dropped"] == {"exact_repo": 2, "exact_blob": 1, "near_dup": 0}


FUNCTION = '''def parse_config(path, defaults=None):
    """Read a configuration file and merge it over the defaults."""
    settings = dict(defaults or {})
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            if not key:
                raise ValueError(f"line {number}: missing key")
            settings[key.strip()] = value.strip()
    return settings


def write_config(path, settings):
    """Write settings back, one key per line, sorted for stable diffs."""
    with open(path, "w", encoding="utf-8") as handle:
        for key in sorted(settings):
            handle.write(f"{key} = {settings[key]}\\n")
'''


def test_near_duplicates_keep_one_file_by_priority(tmp_path, make_context):
    near_copy = FUNCTION.replace("Read a configuration file", "Load a config file") + "\n# trailing note\n"
    unrelated = "import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n" * 3
    shards = [
        [row("a/x", "cfg.py", FUNCTION, license_type="no_license"), row("a/x", "geo.py", unrelated)],
        [row("b/y", "config.py", near_copy, license_type="permissive"), row("b/y", "tiny.py", "x = 1\n")],
        [row("c/z", "tiny.py", "x = 2\n"), row("c/z", "empty.py", "")],
    ]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup"))
    assert {(r["repo_name"], r["path"]) for r in kept_rows(tmp_path)} == {
        ("a/x", "geo.py"), ("b/y", "config.py"), ("b/y", "tiny.py"), ("c/z", "tiny.py"), ("c/z", "empty.py")}
    near = [c for c in read_clusters(tmp_path) if c["reason"] == "near_dup"]
    assert [(c["repo_name"], c["path"], c["kept"], c["cluster_size"]) for c in near] == [
        ("a/x", "cfg.py", False, 2), ("b/y", "config.py", True, 2)]
    assert len({c["cluster_id"] for c in near}) == 1 and near[0]["cluster_id"].startswith("near:")
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["dropped"]["near_dup"] == 1 and metrics["near"]["bands"] == 25 and metrics["near"]["rows"] == 10
    # Files under 5 tokens are never signed, so never near-duplicates.
    assert metrics["near"]["signed_files"] == 3


def test_near_dedup_is_per_language_unless_configured(tmp_path, make_context, smoke_cfg):
    shards = [[row("a/x", "cfg.py", FUNCTION, language="Python"),
               row("b/y", "cfg.txt", FUNCTION + "\n# extra\n", language="Text")]]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup"))
    assert len(kept_rows(tmp_path)) == 2
    run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup={"per_language": False})))
    assert len(kept_rows(tmp_path)) == 1


def test_chains_join_one_cluster_and_verify_checks_pairs(tmp_path, make_context, smoke_cfg):
    # A~B and B~C share most shingles; A and C share less than the threshold. Connected components put all
    # three in one cluster (BigCode's outcome), with one survivor.
    words = [f"word{i}" for i in range(400)]
    a = " ".join(words[:300])
    b = " ".join(words[50:350])
    c = " ".join(words[100:400])
    shards = [[row("r/a", "a.txt", a), row("r/b", "b.txt", b), row("r/c", "c.txt", c)]]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup={"threshold": 0.6})))
    near = [c for c in read_clusters(tmp_path) if c["reason"] == "near_dup"]
    assert len(near) == 3 and len({c["cluster_id"] for c in near}) == 1 and sum(c["kept"] for c in near) == 1
    # With verification every kept edge is a real pair above the threshold (A-C never is).
    run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup={"threshold": 0.6, "verify": True})))
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["near"]["verified_pairs"] <= metrics["near"]["candidate_pairs"]


def test_identical_files_in_100_repositories_are_one_cluster(tmp_path, make_context):
    shards = [[row(f"org/r{i:03d}", "setup.py", "from setuptools import setup\nsetup(name='x')\n",
                   star_events_count=i) for i in range(100)]]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup"))
    assert [r["repo_name"] for r in kept_rows(tmp_path)] == ["org/r099"]
    clusters = read_clusters(tmp_path)
    assert len(clusters) == 100 and {c["cluster_size"] for c in clusters} == {100}
    assert {c["reason"] for c in clusters} == {"exact_blob"}
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["cluster_sizes"] == {"exact_repo": {}, "exact_blob": {"100": 1}, "near_dup": {}}


def test_cluster_sizes_count_the_members_of_every_cluster(tmp_path, make_context):
    tree, pair = "f" * 40, "e" * 40
    near_copy = FUNCTION.replace("Read a configuration file", "Load a config file") + "\n# trailing note\n"
    shards = [
        # One directory in three repositories (2 files each): one exact_repo cluster of 6 files.
        [row(f"fork/{i}", name, text, directory_id=tree, star_events_count=i)
         for i in range(3) for name, text in (("a.py", "A = 1\n"), ("b.py", "B = 2\n"))]
        # One single-file directory in two repositories: an exact_repo cluster of 2.
        + [row(f"mirror/{i}", "m.py", "M = 1\n", directory_id=pair) for i in range(2)],
        # "A = 1" in 2 more repositories: with the kept fork, an exact_blob cluster of 3; a near pair.
        [row("x/one", "a.py", "A = 1\n"), row("x/one", "cfg.py", FUNCTION), row("y/two", "a.py", "A = 1\n"),
         row("y/two", "config.py", near_copy)],
    ]
    write_table(tmp_path / layout.FILTERED, shards)
    run_dedup(make_context("dedup"))

    clusters = read_clusters(tmp_path)
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["cluster_sizes"] == sizes_of(clusters) == {
        "exact_repo": {"2": 1, "6": 1}, "exact_blob": {"3": 1}, "near_dup": {"2": 1}}
    for reason, sizes in metrics["cluster_sizes"].items():
        assert sum(sizes.values()) == metrics["clusters"][reason]
        assert sum(int(size) * n for size, n in sizes.items()) == sum(c["reason"] == reason for c in clusters)


def test_shuffled_shards_give_the_same_survivors_and_clusters(tmp_path, smoke_cfg):
    shards = corpus()
    shards[0].append(row("a/one", "cfg.py", FUNCTION))
    shards[2].append(row("e/five", "config.py", FUNCTION.replace("sorted for stable diffs", "in key order")))

    def outcome(order: list[int], sub: str) -> tuple[list, bytes, dict]:
        root = tmp_path / sub
        write_table(root / layout.FILTERED, [shards[i] for i in order])
        run_dedup(stage_context("dedup", smoke_cfg, root))
        kept = sorted((r["repo_name"], r["path"]) for r in kept_rows(root))
        metrics = json.loads((root / "metrics/dedup.json").read_text())
        return kept, (root / layout.DEDUP_CLUSTERS / "part-00000.parquet").read_bytes(), metrics

    first, shuffled = outcome([0, 1, 2], "one"), outcome([2, 0, 1], "two")
    assert first == shuffled
    assert first[2]["dropped"]["near_dup"] == 1


def test_deterministic(tmp_path, make_context):
    write_table(tmp_path / layout.FILTERED, corpus())

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.DEDUP, layout.DEDUP_CLUSTERS, layout.metrics_file("dedup"))

    run_dedup(make_context("dedup"))
    first = snapshot()
    run_dedup(make_context("dedup"))
    assert snapshot() == first
    assert not list(tmp_path.glob(".tmp*")) and not list((tmp_path / "data").glob(".tmp*"))


def test_buckets_in_parts_give_what_one_part_gives(tmp_path, make_context, monkeypatch):
    from starbuild.dedup import near

    near_copy = FUNCTION.replace("Read a configuration file", "Load a config file") + "\n# trailing note\n"
    shards = [[row(f"r{i}/x", "cfg.py", (FUNCTION if i % 2 else near_copy) + f"# variant {i}\n"),
               row(f"r{i}/x", "c.py", f"y = {i}\n" * 9)]
              for i in range(6)]
    write_table(tmp_path / layout.FILTERED, shards)

    def snapshot() -> dict[str, bytes]:
        return file_bytes(tmp_path, layout.DEDUP, layout.DEDUP_CLUSTERS, layout.metrics_file("dedup"))

    assert near.bucket_parts(6, keys=12 * 25) == 1  # a small corpus is one part
    assert near.bucket_parts(6, keys=10**9) == 6 and near.bucket_parts(500, keys=10**9) == near.MAX_BUCKET_PARTS
    run_dedup(make_context("dedup"))
    one_part = snapshot()
    monkeypatch.setattr(near, "KEYS_PER_PART", 1)  # a part a shard
    run_dedup(make_context("dedup"))
    assert snapshot() == one_part
    assert sum(c["reason"] == "near_dup" for c in read_clusters(tmp_path)) == 6


def test_no_duplicates_keeps_everything(tmp_path, make_context):
    shard = [row("r", f"f{i}.py", f"x = {i}\n") for i in range(5)]
    write_table(tmp_path / layout.FILTERED, [shard, []])
    run_dedup(make_context("dedup"))
    assert read_shard(tmp_path / layout.DEDUP / "part-00000.parquet").to_pylist() == shard
    assert read_shard(tmp_path / layout.DEDUP / "part-00001.parquet").num_rows == 0
    assert read_clusters(tmp_path) == []
    metrics = json.loads((tmp_path / "metrics/dedup.json").read_text())
    assert metrics["dropped"] == {"exact_repo": 0, "exact_blob": 0, "near_dup": 0}
    assert metrics["cluster_sizes"] == {"exact_repo": {}, "exact_blob": {}, "near_dup": {}}


def test_bad_config_and_missing_input(tmp_path, make_context, smoke_cfg):
    with pytest.raises(StageError, match="dvc repro filter"):
        run_dedup(make_context("dedup"))
    write_table(tmp_path / layout.FILTERED, corpus())
    with pytest.raises(StageError, match="threshold.*conf/dedup"):
        run_dedup(make_context("dedup", with_overrides(smoke_cfg, dedup={"threshold": 1.5})))
