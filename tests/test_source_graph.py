"""The `swh_graph` and `stack_v2` sources against the `local` source on the same git repositories.

The repositories are exported as Software Heritage would hold them (tests/swh_fixtures.py): ORC tables and
a gzip content store, read from a directory and from an S3 server (moto, anonymous reads) on 127.0.0.1.
Every source must give the same rows, except what only an archive knows (the visit) and the origin's name.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig

from starbuild.core import layout, schemas
from starbuild.core.config import typed_section
from starbuild.core.shards import list_shards
from starbuild.core.stage import StageError
from starbuild.swh.graph import (
    MAX_DEPTH,
    Export,
    GraphSource,
    ensure_listing,
    listing_key,
    plan,
    read_listing,
)
from starbuild.swh.origins import Checkout
from starbuild.swh.source import SourceConfig, read_rows, repo_name
from starbuild.swh.stage import run_pull
from starbuild.swh.storage import S3Options
from tests import swh_fixtures as fx
from tests.factories import stage_context, with_overrides
from tests.projects import moto_server

BUCKET = "swh-test"
NAMES = {fx.ALPHA_URL: "test/alpha", fx.BETA_URL: "gitlab.com/test/beta"}


@dataclass(frozen=True)
class World:
    """The repositories, their export (graph tables + content store) and the local source's pull of them."""

    alpha: Path
    beta: Path
    graph: Path
    store: Path
    export: fx.Export
    local_rows: list[dict[str, Any]]
    local_metrics: dict[str, Any]


def pull(cfg: DictConfig, root: Path, workers: int = 1, **source: Any) -> tuple[list[dict], dict]:
    """Run the pull stage under `root` with `source` overrides; its raw rows and metrics."""
    ctx = stage_context("pull", with_overrides(cfg, source={"max_file_bytes": fx.MAX_FILE_BYTES, **source},
                                               executor={"workers": workers}), root)
    run_pull(ctx)
    shards = list_shards(ctx.root / layout.RAW)
    for shard in shards:
        schemas.validate(shard, schemas.RAW)
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    return rows, json.loads((ctx.root / "metrics/pull.json").read_text())


def without(rows: list[dict], *columns: str) -> list[dict]:
    """The rows without some columns."""
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


def of(rows: list[dict], name: str) -> list[dict]:
    """The rows of one origin."""
    return [row for row in rows if row["repo_name"] == name]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, smoke_cfg: DictConfig) -> World:
    base = tmp_path_factory.mktemp("swh")
    alpha = fx.make_alpha(base / "repos" / "alpha")
    beta = fx.make_beta(base / "repos" / "beta")
    export = fx.build_export(alpha, beta)
    fx.write_export(export, base / "graph", base / "content")
    origins = [{"name": NAMES[fx.ALPHA_URL], "path": str(alpha)}, {"name": NAMES[fx.BETA_URL], "path": str(beta)}]
    rows, metrics = pull(smoke_cfg, base / "local", origins=origins)
    return World(alpha, beta, base / "graph", base / "content", export, rows, metrics)


def graph_source(world: World, cache: Path, **more: Any) -> dict[str, Any]:
    """Source overrides for the graph export in its directory, with its own content cache."""
    return {"kind": "swh_graph", "origins": [], "graph": str(world.graph), "content_store": str(world.store),
            "content_cache": str(cache), **more}


@pytest.fixture(scope="module")
def graph_pull(world: World, smoke_cfg: DictConfig, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[list[dict], dict]:
    """The whole export pulled from its directory, in two worker processes (the source is pickled)."""
    base = tmp_path_factory.mktemp("graph_pull")
    return pull(smoke_cfg, base / "out", workers=2, **graph_source(world, base / "cache"))


def test_graph_rows_equal_local_rows_but_for_name_and_visit(world: World, graph_pull: tuple[list, dict]) -> None:
    rows, metrics = graph_pull
    assert sorted(metrics["origins"]) == ["gitlab.com/test/beta", "test/alpha", "test/beta-released",
                                          "test/partial"]
    for name in NAMES.values():
        assert without(of(rows, name), "repo_name", "visit_date") == without(of(world.local_rows, name),
                                                                            "repo_name", "visit_date")
        # Every file not pulled is counted under the same reason by both sources.
        assert metrics["origins"][name]["skipped"] == world.local_metrics["origins"][name]["skipped"]
    alpha = of(rows, "test/alpha")
    assert {r["visit_date"] for r in alpha} == {fx.VISIT_DATE.replace(tzinfo=UTC)}
    assert {r["branch_name"] for r in alpha} == {"refs/heads/main"}
    assert "dev_only.py" not in {r["path"] for r in alpha}
    assert {r["revision_id"] for r in alpha} == {fx.git(world.alpha, "rev-parse", "main")}
    assert {r["branch_name"] for r in of(rows, "gitlab.com/test/beta")} == {"refs/heads/master"}
    assert metrics["origins"]["test/alpha"]["skipped"] == {"symlink": 1, "submodule": 1, "undecodable_path": 1,
                                                          "too_large": 1, "binary": 1}
    run_sh = next(r for r in alpha if r["path"] == "bin/run.sh")
    assert run_sh["is_executable"]
    latin1 = next(r for r in alpha if r["path"] == "latin1.c")
    assert latin1["content"] == fx.LATIN1
    assert len({r["license_type"] for r in alpha}) == 2  # the GPL directory differs from the MIT root


def test_releases_are_followed_and_origins_without_a_full_visit_are_counted(graph_pull: tuple[list, dict]) -> None:
    rows, metrics = graph_pull
    released, beta = of(rows, "test/beta-released"), of(rows, "gitlab.com/test/beta")
    differ = ("repo_name", "snapshot_id", "branch_name")
    assert without(released, *differ) == without(beta, *differ)
    assert {r["branch_name"] for r in released} == {"refs/heads/master"}
    assert metrics["origins"]["test/partial"]["files"] == 0
    assert metrics["origins"]["test/partial"]["skipped"] == {"no_full_visit": 1}
    assert metrics["skipped"]["no_full_visit"] == 1


@pytest.mark.parametrize(("url", "name"), [("https://github.com/bigcode/starcoder2", "bigcode/starcoder2"),
                                           ("https://github.com/a/b.git", "a/b"),
                                           ("https://gitlab.com/a/b", "gitlab.com/a/b"),
                                           ("https://pypi.org/project/x/", "pypi.org/project/x")])
def test_repo_names_follow_the_stack_v2(url: str, name: str) -> None:
    assert repo_name(url) == name


def test_configured_origins_are_chosen_and_unknown_ones_named(world: World, smoke_cfg: DictConfig,
                                                              tmp_path: Path) -> None:
    source = graph_source(world, tmp_path / "cache")
    rows, _ = pull(smoke_cfg, tmp_path / "one", **{**source, "origins": [fx.BETA_URL]})
    assert {r["repo_name"] for r in rows} == {"gitlab.com/test/beta"}
    with pytest.raises(StageError, match="https://github.com/no/such"):
        pull(smoke_cfg, tmp_path / "two", **{**source, "origins": [fx.BETA_URL, "https://github.com/no/such"]})


def test_bad_and_missing_contents_are_counted(world: World, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    store = tmp_path / "content"
    shutil.copytree(world.store, store)
    by_path = {r["path"]: r["blob_id"] for r in of(world.local_rows, "test/alpha")}
    (store / by_path["README.md"]).write_bytes(b"not gzip at all")
    (store / by_path["src/app/main.py"]).unlink()
    rows, metrics = pull(smoke_cfg, tmp_path / "out",
                         **graph_source(world, tmp_path / "cache", content_store=str(store), origins=[fx.ALPHA_URL]))
    assert {"README.md", "src/app/main.py"}.isdisjoint(r["path"] for r in rows)
    assert len(rows) == len(by_path) - 2
    assert metrics["skipped"]["content_corrupt"] == 1
    assert metrics["skipped"]["content_missing"] == 1


def test_a_second_pull_reads_the_cache_only(world: World, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    store = tmp_path / "content"
    shutil.copytree(world.store, store)
    source = graph_source(world, tmp_path / "cache", content_store=str(store))
    first, _ = pull(smoke_cfg, tmp_path / "one", **source)
    shutil.rmtree(store)  # the store is gone: anything not cached would now count as missing
    second, metrics = pull(smoke_cfg, tmp_path / "two", **source)
    assert second == first
    assert metrics["skipped"]["content_missing"] == 0


# --- The same export on S3 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(world: World) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 holding the export and the contents in a bucket anyone may read."""
    import boto3

    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="owner",
                              aws_secret_access_key="owner")
        client.create_bucket(Bucket=BUCKET)
        for local, prefix in ((world.graph, "graph"), (world.store, "content")):
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local)}")
        # Unsigned requests to a private bucket are refused (moto checks the bucket policy and object ACLs)…
        private = f"{endpoint}/{BUCKET}/content/{next(iter(world.export.contents))}"
        with pytest.raises(HTTPError, match="403"):
            urllib.request.urlopen(private, timeout=10)
        # …so the bucket is made public as SWH's is. moto authorises a HEAD as its own s3:HeadObject action,
        # where AWS takes s3:GetObject for both.
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
             "Resource": f"arn:aws:s3:::{BUCKET}/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}]}
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
        urllib.request.urlopen(private, timeout=10).close()
        yield endpoint


def test_the_export_on_s3_gives_the_same_rows(world: World, graph_pull: tuple[list, dict], s3: str,
                                              smoke_cfg: DictConfig, tmp_path: Path) -> None:
    env = {k: os.environ.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
    try:
        rows, metrics = pull(smoke_cfg, tmp_path / "out", kind="swh_graph", origins=[],
                             graph=f"s3://{BUCKET}/graph", content_store=f"s3://{BUCKET}/content",
                             content_cache=str(tmp_path / "cache"), s3_endpoint=s3, s3_anonymous=True)
    finally:
        os.environ.update(env)
    assert rows == graph_pull[0]
    assert metrics["skipped"] == graph_pull[1]["skipped"]
    # The listing's key sees the export's files on S3 as on disk (with S3's modification times).
    listed = Export(f"s3://{BUCKET}/graph", S3Options(s3, anonymous=True)).files("directory_entry")
    on_disk = sorted((world.graph / "directory_entry").iterdir())
    assert [(Path(path).name, size) for path, size, _ in listed] == [(f.name, f.stat().st_size) for f in on_disk]
    assert all(mtime for _, _, mtime in listed)


# --- The Stack v2's index ----------------------------------------------------------------------------------


def write_index(rows: list[dict], directory: Path) -> Path:
    """A Stack-v2-style index of `rows`: ids and annotations, no content, paths from '/', one file per repo."""
    directory.mkdir(parents=True)
    for i, name in enumerate(sorted({r["repo_name"] for r in rows})):
        listed = [{**{k: v for k, v in r.items() if k not in ("content", "swhid")}, "path": "/" + r["path"],
                   "extension": Path(r["path"]).suffix.lstrip("."), "github_id": None}
                  for r in rows if r["repo_name"] == name]
        pq.write_table(pa.Table.from_pylist(listed), directory / f"part-{i}.parquet")
    return directory


def stack_source(world: World, index: Path, cache: Path, **more: Any) -> dict[str, Any]:
    return {"kind": "stack_v2", "origins": [], "index": [str(index)], "content_store": str(world.store),
            "content_cache": str(cache), **more}


def test_stack_v2_index_gives_the_local_rows(world: World, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    index = write_index(world.local_rows, tmp_path / "index")
    rows, _ = pull(smoke_cfg, tmp_path / "out", **stack_source(world, index, tmp_path / "cache"))
    assert rows == world.local_rows


def test_stack_v2_origin_keys_follow_each_repositorys_rows(world: World, smoke_cfg: DictConfig,
                                                          tmp_path: Path) -> None:
    from starbuild.swh.stack_v2 import StackV2Source

    def keys(rows: list[dict], name: str) -> dict[str, str]:
        source_cfg = {"max_file_bytes": fx.MAX_FILE_BYTES,
                      **stack_source(world, write_index(rows, tmp_path / name), tmp_path / "cache")}
        source = StackV2Source(typed_section(with_overrides(smoke_cfg, source=source_cfg), "source", SourceConfig),
                               tmp_path)
        origins = source.origins()
        return dict(zip([o.name for o in origins], source.origin_keys(origins), strict=True))

    before = keys(world.local_rows, "a")
    assert keys(world.local_rows, "b") == before and len(set(before.values())) == len(before) > 1
    moved = [dict(r) for r in world.local_rows]
    moved[0]["path"] += ".moved"  # one row of one repository
    after = keys(moved, "c")
    changed = moved[0]["repo_name"]
    assert after[changed] != before[changed]
    assert {n: k for n, k in after.items() if n != changed} == {n: k for n, k in before.items() if n != changed}


def test_stack_v2_decodes_with_the_rows_encoding(world: World, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    alpha = [dict(r) for r in of(world.local_rows, "test/alpha")]
    for row in alpha:
        if row["path"] == "latin1.c":
            row["src_encoding"] = "ISO-8859-1"  # as The Stack v2 names it
        if row["path"] == "README.md":
            row["src_encoding"] = "UTF-32"  # wrong: the bytes do not decode
    index = write_index(alpha, tmp_path / "index")
    rows, metrics = pull(smoke_cfg, tmp_path / "out",
                         **stack_source(world, index, tmp_path / "cache", origins=["test/alpha"]))
    latin1 = next(r for r in rows if r["path"] == "latin1.c")
    assert (latin1["content"], latin1["src_encoding"]) == (fx.LATIN1, "ISO-8859-1")
    assert latin1["length_bytes"] == len(fx.LATIN1.encode("utf-8"))
    assert "README.md" not in {r["path"] for r in rows}
    assert metrics["skipped"]["undecodable"] == 1


def test_directories_deeper_than_64_levels_are_counted_not_read(tmp_path: Path) -> None:
    export = fx.Export()
    fx.add_content(export, b"leaf\n")
    sha1 = next(iter(export.contents))
    sha1_git = export.tables["content"][0]["sha1_git"]
    levels = [f"{i:040x}" for i in range(70)]
    for depth, (directory, below) in enumerate(zip(levels, [*levels[1:], None], strict=True)):
        export.tables["directory_entry"].append({"directory_id": directory, "name": b"f.txt", "type": "file",
                                                 "target": sha1_git, "perms": 0o100644})
        if below:
            export.tables["directory_entry"].append({"directory_id": directory, "name": b"d%d" % depth,
                                                     "type": "dir", "target": below, "perms": 0o040000})
    fx.write_export(export, tmp_path / "graph", tmp_path / "content")
    checkout = Checkout()
    listing = ensure_listing(Export(str(tmp_path / "graph"), S3Options()), [levels[0]], tmp_path / "listings")
    wanted = plan(read_listing(listing, levels[0]), 100, checkout)
    assert len(wanted) == MAX_DEPTH == 64
    assert {sha for _, sha, _ in wanted} == {sha1}
    assert max(path.count("/") for path, _, _ in wanted) == MAX_DEPTH - 1
    assert checkout.skipped == {"too_deep": 1}


# --- The listing of every origin's paths -------------------------------------------------------------------


def graph_config(cfg: DictConfig, world: World, cache: Path) -> SourceConfig:
    """The `source` section for the whole export in its directory, as the pull stage reads it."""
    source = {"max_file_bytes": fx.MAX_FILE_BYTES, **graph_source(world, cache)}
    return typed_section(with_overrides(cfg, source=source), "source", SourceConfig)


def test_paths_are_listed_once_for_all_origins_and_the_listing_reused(world: World, smoke_cfg: DictConfig,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    traversals: list[list[str]] = []
    write_listing = Export.write_listing

    def counted(export: Export, roots: list[str], destination: Path) -> None:
        traversals.append(roots)
        write_listing(export, roots, destination)

    monkeypatch.setattr(Export, "write_listing", counted)
    source = graph_source(world, tmp_path / "cache")
    first, _ = pull(smoke_cfg, tmp_path / "one", **source)
    # One traversal for every origin: alpha's root and beta's (which beta-released shares; partial has none).
    assert traversals == [sorted({fx.git(world.alpha, "rev-parse", "main^{tree}"),
                                  fx.git(world.beta, "rev-parse", "master^{tree}")})]
    [listing] = (tmp_path / "graph-listings").glob("*.parquet")
    assert not list(listing.parent.glob("*.partial"))
    before = listing.stat()

    def refused(*_: Any) -> None:
        raise AssertionError("directory_entry traversed again")

    monkeypatch.setattr(Export, "write_listing", refused)
    second, _ = pull(smoke_cfg, tmp_path / "two", **source)
    assert second == first
    assert (listing.stat().st_ino, listing.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_origins_sharing_a_root_both_get_its_rows(world: World, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    source = GraphSource(graph_config(smoke_cfg, world, tmp_path / "cache"), tmp_path)
    origins = {o.name: o for o in source.origins()}
    beta, released = origins["gitlab.com/test/beta"], origins["test/beta-released"]
    assert beta.ref.directory_id == released.ref.directory_id
    assert beta.ref.listing == released.ref.listing == origins["test/alpha"].ref.listing
    listed = [(r["root"], r["path"]) for r in pq.read_table(beta.ref.listing).to_pylist()]
    assert listed == sorted(set(listed))  # by root and path, the shared root's entries once
    summaries = [source.pull_origin(o, tmp_path / f"{i}.arrow") for i, o in enumerate((beta, released))]
    assert summaries[0].files == summaries[1].files == len(of(world.local_rows, NAMES[fx.BETA_URL]))
    rows = [[row for batch in read_rows(tmp_path / f"{i}.arrow") for row in batch.to_pylist()] for i in range(2)]
    differ = ("repo_name", "snapshot_id", "branch_name")
    assert without(rows[0], *differ) == without(rows[1], *differ)


def test_origin_keys_name_the_visit_so_a_resumed_pull_reuses_finished_origins(world: World, smoke_cfg: DictConfig,
                                                                              tmp_path: Path) -> None:
    source = GraphSource(graph_config(smoke_cfg, world, tmp_path / "cache"), tmp_path)
    origins = source.origins()
    keys = [source.origin_key(o) for o in origins]
    assert keys == [source.origin_key(o) for o in GraphSource(graph_config(smoke_cfg, world, tmp_path / "c2"),
                                                                     tmp_path).origins()]
    # Origins sharing a root directory still differ by name and snapshot.
    assert len(set(keys)) == len(keys)


def test_the_listing_key_follows_the_export_and_the_roots(world: World, tmp_path: Path) -> None:
    graph = shutil.copytree(world.graph, tmp_path / "graph")
    roots = ["b" * 40, "a" * 40]
    key = listing_key(Export(str(graph), S3Options()), roots)
    files = Export(str(graph), S3Options()).files("content")
    assert [Path(path).name for path, _, _ in files] == ["part-0.orc", "part-1.orc"]
    assert listing_key(Export(str(graph), S3Options()), [*reversed(roots), roots[0]]) == key
    assert listing_key(Export(str(graph), S3Options()), roots[:1]) != key
    # A table the listing does not read may change…
    origin = graph / "origin" / "part-0.orc"
    orc.write_table(orc.read_table(origin), origin, compression="snappy")
    assert listing_key(Export(str(graph), S3Options()), roots) == key
    # …one it reads may not: rewritten (another size)…
    part = graph / "directory_entry" / "part-0.orc"
    orc.write_table(orc.read_table(part), part, compression="snappy")
    rewritten = listing_key(Export(str(graph), S3Options()), roots)
    assert rewritten != key
    # …or only touched (the same size, another mtime).
    content = graph / "content" / "part-0.orc"
    os.utime(content, ns=(content.stat().st_atime_ns, content.stat().st_mtime_ns + 10**9))
    assert listing_key(Export(str(graph), S3Options()), roots) not in (key, rewritten)
