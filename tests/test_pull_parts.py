"""A large git origin pulled in parts by several tasks gives the rows and counts of one task pulling it whole."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pytest
from omegaconf import DictConfig

from starbuild.core import layout, schemas
from starbuild.core.shards import list_shards
from starbuild.swh import stage
from starbuild.swh.licenses import is_license_file, licensing_directories
from starbuild.swh.local import LocalSource
from starbuild.swh.origins import Origin, Part, walk_git
from starbuild.swh.source import SourceConfig, combine_summaries, read_rows
from starbuild.swh.stage import origin_parts, pull_tasks, run_pull
from tests.factories import stage_context, with_overrides
from tests.swh_fixtures import MAX_FILE_BYTES, make_alpha, make_beta


def staged_table(path: Path) -> pa.Table:
    return pa.Table.from_batches(list(read_rows(path)), schema=schemas.RAW)


def local_source(root: Path) -> LocalSource:
    return LocalSource(SourceConfig(kind="local", max_file_bytes=MAX_FILE_BYTES, shard_target_bytes=4_000_000,
                                    exclude=[], origins=[], opt_out="", encodings=["cp1252", "latin_1"],
                                    license_min_score=0.8), root)


@pytest.mark.parametrize("count", [2, 3, 5, 40])
def test_parts_of_an_origin_together_are_the_whole_origin(tmp_path: Path, count: int) -> None:
    # alpha's root LICENSE (MIT) and vendor/gpl/LICENSE license files in other parts; its symlink, submodule,
    # binary, too large and non-UTF-8-named entries are each counted by the one part holding them.
    source = local_source(tmp_path)
    origin = Origin("alpha", make_alpha(tmp_path / "alpha"))
    whole = source.pull_origin(origin, tmp_path / "whole.arrow")
    parts = [source.pull_origin(origin, tmp_path / f"part-{k}.arrow", Part(k, count)) for k in range(count)]
    expected = staged_table(tmp_path / "whole.arrow")
    assert pa.concat_tables(staged_table(tmp_path / f"part-{k}.arrow") for k in range(count)).equals(expected)
    assert asdict(combine_summaries(parts)) == asdict(whole)
    licensed = {row["path"]: row["detected_licenses"] for row in expected.to_pylist()}
    assert licensed["vendor/gpl/lib.c"] == ["GPL-3.0-only", "MIT"] and licensed["src/app/main.py"] == ["MIT"]
    assert {k for k, n in whole.skipped.items() if n} >= {"symlink", "submodule", "binary", "too_large",
                                                           "undecodable_path"}


def test_a_directory_origin_is_never_cut(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    source = local_source(tmp_path)
    assert source.file_counts([Origin("plain", root)]) == [None]
    with pytest.raises(ValueError, match="pulled whole"):
        source.pull_origin(Origin("plain", root), tmp_path / "out.arrow", Part(0, 2))


def test_only_origins_over_a_fair_share_of_the_files_are_cut() -> None:
    # torch's headers beside smaller trees: a share is all files over the workers.
    assert origin_parts([9431, 500, 300, None], parallel=2) == [2, 1, 1, 1]
    assert origin_parts([9431, 500, 300, None], parallel=8) == [8, 1, 1, 1]
    assert origin_parts([1500, 10], parallel=2) == [2, 1]  # a part holds at least MIN_PART_FILES
    assert origin_parts([9431, 500], parallel=1) == [1, 1]
    assert origin_parts([9431, 500], parallel=None) == [1, 1]  # a Ray cluster of unknown size
    assert origin_parts([None, None], parallel=8) == [1, 1]


def test_the_stage_writes_the_same_bytes_with_origins_cut_into_parts(smoke_cfg: DictConfig, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    origins = [{"name": "alpha", "path": str(make_alpha(tmp_path / "alpha"))},
               {"name": "beta", "path": str(make_beta(tmp_path / "beta"))}]
    cfg = with_overrides(smoke_cfg, source={"origins": origins, "max_file_bytes": MAX_FILE_BYTES,
                                            "shard_target_bytes": 200})
    whole = stage_context("pull", with_overrides(cfg, executor={"workers": 1}), tmp_path / "whole")
    run_pull(whole)
    monkeypatch.setattr(stage, "MIN_PART_FILES", 2)
    source = local_source(tmp_path)
    plan = pull_tasks(source, [Origin("alpha", tmp_path / "alpha"), Origin("beta", tmp_path / "beta")],
                      tmp_path, parallel=2)
    assert sorted(t.part.count for t in plan) == [1, 2, 2]  # alpha cut in two
    assert [t.files for t in plan] == sorted((t.files for t in plan), reverse=True)  # largest first
    parted = stage_context("pull", with_overrides(cfg, executor={"workers": 2}), tmp_path / "parted")
    run_pull(parted)
    shards = list_shards(whole.root / layout.RAW)
    assert len(shards) > 1
    assert [s.read_bytes() for s in shards] == [s.read_bytes() for s in list_shards(parted.root / layout.RAW)]
    metrics = layout.metrics_file("pull")
    assert (whole.root / metrics).read_bytes() == (parted.root / metrics).read_bytes()


def test_a_part_reads_only_the_license_files_above_its_own_files(tmp_path: Path) -> None:
    # Every license file is read again by each part that needs it (askalono costs ~0.15 s a call).
    repo = make_alpha(tmp_path / "alpha")
    every: list = []
    walk_git(Origin("alpha", repo), every.append)
    license_like = [f.path for f in every if is_license_file(f.path)]
    assert sorted(license_like) == ["LICENSE", "README.md", "vendor/gpl/LICENSE"]
    for count in (2, 3, 5, 40):
        for k in range(count):
            files: list = []
            context: list = []
            walk_git(Origin("alpha", repo), files.append, Part(k, count), context.append)
            needed = licensing_directories(f.path for f in files)
            assert sorted(f.path for f in context) == sorted(
                p for p in license_like if p not in {f.path for f in files} and p.rpartition("/")[0] in needed)


def test_licensing_directories_are_each_paths_directory_and_those_above() -> None:
    assert licensing_directories(["a/b/c.py", "a/d.py", "e.py"]) == {"", "a", "a/b"}
    assert licensing_directories([]) == set()
