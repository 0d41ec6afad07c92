"""ScanCode as the license detector (the `scancode` extra), and the one-line error without it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.swh import licenses, scancode
from starbuild.swh.stage import run_pull
from tests.factories import with_overrides
from tests.swh_fixtures import MIT

GPL3_NOTICE = ("This program is free software: you can redistribute it and/or modify it under the terms of the\n"
               "GNU General Public License as published by the Free Software Foundation, either version 3 of the\n"
               "License, or (at your option) any later version.\n")


@pytest.fixture
def with_scancode() -> None:
    pytest.importorskip("licensedcode.detection",
                        reason="needs the scancode extra: make setup-scancode (pip install '.[scancode]')")


@pytest.mark.usefixtures("with_scancode")
@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("LICENSE", MIT, ["MIT"]),
        ("sub/COPYING", GPL3_NOTICE, ["GPL-3.0-or-later"]),
        ("README.md", "# Tool\n\nThis project is licensed under the Apache License 2.0.\n", ["Apache-2.0"]),
        ("README.md", "# Tool\n\nNothing about terms here.\n", []),
    ],
)
def test_scancode_reads_license_files_and_mentions(path: str, text: str, expected: list[str]) -> None:
    assert licenses.detect(path, text, 0.8, licenses.SCANCODE) == expected


@pytest.mark.usefixtures("with_scancode")
def test_pull_with_scancode_classifies_per_directory(make_context: Callable[..., StageContext],
                                                     smoke_cfg: DictConfig, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    (root / "gpl_part").mkdir(parents=True)
    (root / "LICENSE").write_text(MIT)
    (root / "main.py").write_text("print('mit')\n")
    (root / "gpl_part" / "COPYING").write_text(GPL3_NOTICE)
    (root / "gpl_part" / "tool.py").write_text("print('gpl')\n")
    # One worker: the pull runs in this process, which has loaded ScanCode's index already.
    cfg = with_overrides(smoke_cfg, executor={"workers": 1}, source={
        "license_detector": "scancode", "origins": [{"name": "t/mixed", "path": str(root)}]})
    ctx = make_context("pull", cfg)
    run_pull(ctx)
    rows = {r["path"]: r for shard in list_shards(ctx.root / layout.RAW) for r in read_shard(shard).to_pylist()}
    assert (rows["main.py"]["license_type"], rows["main.py"]["detected_licenses"]) == ("permissive", ["MIT"])
    assert rows["gpl_part/tool.py"]["license_type"] == "non_permissive"
    assert rows["gpl_part/tool.py"]["detected_licenses"] == ["GPL-3.0-or-later", "MIT"]


def test_scancode_missing_is_one_line_naming_the_fix(make_context: Callable[..., StageContext],
                                                     smoke_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    scancode._detector.cache_clear()
    monkeypatch.setitem(sys.modules, "licensedcode.detection", None)  # as if the extra were not installed
    try:
        ctx = make_context("pull", with_overrides(smoke_cfg, source={"license_detector": "scancode"}))
        with pytest.raises(StageError, match=r"^source.license_detector is scancode .*make setup-scancode") as caught:
            run_pull(ctx)
        assert "\n" not in str(caught.value)
        assert not (ctx.root / layout.RAW).exists()
    finally:
        scancode._detector.cache_clear()


def test_an_unknown_detector_is_refused() -> None:
    from starbuild.swh.source import SourceConfig

    with pytest.raises(ValueError, match="license_detector 'scanc0de' is unknown; choose one of: askalono, scancode"):
        SourceConfig(kind="local", max_file_bytes=1, shard_target_bytes=1, exclude=[], origins=[], opt_out="",
                     encodings=[], license_min_score=0.8, license_detector="scanc0de")
