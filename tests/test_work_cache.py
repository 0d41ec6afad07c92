"""Resumable stages: a stage killed part-way reruns only its missing shards and ends byte-identical."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from starbuild.clean.stage import run_clean
from starbuild.core import layout, schemas
from starbuild.core.config import compose
from starbuild.swh.local import LocalSource
from starbuild.swh.source import SourceConfig
from starbuild.swh.stage import run_pull
from starbuild.work_cache import ENV, WorkCache, main, stage_fingerprint, usage
from tests.conftest import REPO_ROOT
from tests.factories import file_bytes, raw_row, stage_context, with_overrides, write_table

SHARDS = 10
RUN_STAGE = """
import importlib, sys
from pathlib import Path
from omegaconf import OmegaConf
from tests.factories import stage_context
module, function, name = sys.argv[3:6]
getattr(importlib.import_module(module), function)(stage_context(name, OmegaConf.load(sys.argv[1]), Path(sys.argv[2])))
"""


def kill_and_resume(run, name: str, cfg, root: Path, tmp_path: Path, caplog, out: Path, desc: str) -> int:
    """Run stage `run` in another process on `root`, SIGKILL it once 3 (not all) of its SHARDS tasks are in
    the work cache, rerun it here; check that the rerun reused exactly those. Return how many."""
    config_file = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, config_file)
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"}
    process = subprocess.Popen([sys.executable, "-c", RUN_STAGE, str(config_file), str(root), run.__module__,
                                run.__name__, name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = root / ".cache" / "starbuild" / "work"
    deadline = time.monotonic() + 120
    while usage(cache)[0] < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "no task finished"
        time.sleep(0.002)
    process.kill()
    process.wait()
    done = usage(cache)[0]
    assert 3 <= done < SHARDS and not (root / out).exists(), "killed too late"
    with caplog.at_level(logging.INFO, logger="starbuild.work_cache"):
        run(stage_context(name, cfg, root))
    assert f"{desc}: {done} of {SHARDS} tasks reused" in caplog.text
    assert usage(cache) == (0, 0), "a finished stage drops its entries"
    return done


def stdlib_shards(root: Path) -> None:
    """data/dedup/ as SHARDS shards of real code (the stdlib's email package, repeated), for the clean stage."""
    sources = sorted(Path(logging.__file__).parent.parent.joinpath("email").rglob("*.py"))
    rows = [raw_row(f"org/repo-{i % 7}", f"m{i}/{path.name}", path.read_text(encoding="utf-8"))
            for i, path in enumerate(sources * 3)]
    per_shard = -(-len(rows) // SHARDS)
    write_table(root / layout.DEDUP, [rows[i : i + per_shard] for i in range(0, len(rows), per_shard)],
                schemas.DEDUP)


@pytest.fixture
def cfg():
    smoke = compose(["experiment=smoke"], conf_dir=REPO_ROOT / "conf")
    return with_overrides(smoke, executor={"workers": 1})


def test_a_killed_stage_reruns_only_the_missing_shards(tmp_path: Path, cfg, monkeypatch, caplog) -> None:
    monkeypatch.delenv(ENV, raising=False)
    for name in ("whole", "killed"):
        stdlib_shards(tmp_path / name)
    run_clean(stage_context("clean", cfg, tmp_path / "whole"))
    outs = (layout.CLEAN, layout.DECONTAMINATED, layout.metrics_file("clean"))
    expected = file_bytes(tmp_path / "whole", *outs)
    assert usage(tmp_path / "whole" / ".cache" / "starbuild" / "work") == (0, 0), "a finished stage keeps none"

    # The same stage in another process, killed (SIGKILL) once some but not all shards are done.
    kill_and_resume(run_clean, "clean", cfg, tmp_path / "killed", tmp_path, caplog, layout.CLEAN, "clean")
    assert file_bytes(tmp_path / "killed", *outs) == {
        name.replace("whole", "killed"): data for name, data in expected.items()}


def test_a_killed_pull_reruns_only_the_missing_origins(tmp_path: Path, cfg, monkeypatch, caplog) -> None:
    monkeypatch.delenv(ENV, raising=False)
    sources = sorted(Path(logging.__file__).parent.parent.joinpath("email").rglob("*.py"))
    origins = []
    for index in range(SHARDS):
        root = tmp_path / "origins" / f"repo-{index}"
        root.mkdir(parents=True)
        for source in sources[index::2]:
            (root / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        origins.append({"name": f"org/repo-{index}", "path": str(root)})
    pull_cfg = with_overrides(cfg, source={"origins": origins, "opt_out": str(tmp_path / "opt_out.txt")})
    (tmp_path / "opt_out.txt").write_text("")
    outs = (layout.RAW, layout.metrics_file("pull"))
    run_pull(stage_context("pull", pull_cfg, tmp_path / "whole"))
    expected = file_bytes(tmp_path / "whole", *outs)

    kill_and_resume(run_pull, "pull", pull_cfg, tmp_path / "killed", tmp_path, caplog, layout.RAW, "origins")
    assert file_bytes(tmp_path / "killed", *outs) == {
        name.replace("whole", "killed"): data for name, data in expected.items()}
    # A changed file is a changed origin: its key changes, so an old entry would not be reused.
    source = LocalSource(SourceConfig(**OmegaConf.to_container(pull_cfg.source)), tmp_path)
    first = source.origins()[0]
    before = source.origin_key(first)
    assert source.origin_key(first) == before
    (first.root / sources[0].name).write_text("changed = True\n")
    assert source.origin_key(first) != before


def test_entries_are_keyed_by_code_params_and_input(tmp_path: Path, cfg) -> None:
    base = stage_fingerprint("clean", cfg)
    assert stage_fingerprint("clean", cfg) == base
    assert stage_fingerprint("clean", with_overrides(cfg, executor={"workers": 2})) == base, "not the executor"
    assert stage_fingerprint("clean", with_overrides(cfg, clean={"pii": {"max_skipped_chars": 4}})) != base
    assert stage_fingerprint("filter", cfg) != base


def test_size_is_printed_and_prune_empties_it(tmp_path: Path, monkeypatch, capsys) -> None:
    entry = tmp_path / "work" / "clean" / "abc" / ("0" * 64)
    entry.mkdir(parents=True)
    (entry / "output").write_bytes(b"x" * 1000)
    monkeypatch.setenv(ENV, str(tmp_path / "work"))
    main([])
    assert "1 entries, 0.0 MB" in capsys.readouterr().out
    main(["--prune"])
    assert not (tmp_path / "work").exists()
    monkeypatch.setenv(ENV, "off")
    assert WorkCache.for_stage("clean", tmp_path, compose([], conf_dir=REPO_ROOT / "conf")).directory is None
