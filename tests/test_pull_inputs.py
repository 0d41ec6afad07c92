"""What real repositories throw at the pull: other encodings, binary and huge blobs, odd names and links,
licenses per directory. Each either becomes a faithful row or is counted under a named reason."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.shards import list_shards, read_shard
from starbuild.core.stage import StageContext
from starbuild.swh.decoding import decode
from starbuild.swh.stage import run_pull
from tests.factories import git, with_overrides
from tests.swh_fixtures import GPL3, MIT

ENCODINGS = ["cp1252", "latin_1", "gb18030", "big5", "shift_jis", "cp932", "euc_jp", "euc_kr", "cp1251"]


@pytest.mark.parametrize(
    ("text", "codec", "encoding"),
    [
        ("plain ascii\n", "utf-8", "UTF-8"),
        ("/* café */\n", "latin-1", "CP1252"),
        ("# Ce fichier décrit la configuration générale du système.\n", "latin-1", "CP1252"),
        ("def f():\n    return '日本語のテキスト'\n", "shift_jis", "CP932"),
        ("/* 中文注释 */\nint x;\n", "gbk", "GB18030"),
        ("// 한국어 주석입니다\nint y;\n", "euc_kr", "EUC_KR"),
        ("x = 'ünïcödé'\n", "utf-16", "UTF-16"),
    ],
)
def test_text_in_other_encodings_is_decoded_and_named(text: str, codec: str, encoding: str) -> None:
    decoded = decode(text.encode(codec), ENCODINGS)
    assert decoded is not None and (decoded.text, decoded.encoding) == (text, encoding)


@pytest.mark.parametrize("data", [b"\x00\x01\x02binary", b"\x7fELF\x02\x01\x01\x00\x00", "x".encode("utf-16-le")])
def test_binary_is_not_text(data: bytes) -> None:
    assert decode(data, ENCODINGS) is None


def pull_rows(make_context: Callable[..., StageContext], cfg: DictConfig, origins: list[dict],
              **source: object) -> tuple[list[dict], dict]:
    ctx = make_context("pull", with_overrides(cfg, source={"origins": origins, **source}))
    run_pull(ctx)
    rows = [r for shard in list_shards(ctx.root / layout.RAW) for r in read_shard(shard).to_pylist()]
    return rows, json.loads((ctx.root / "metrics/pull.json").read_text())


def test_bad_files_become_rows_or_named_counts(make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
                                               tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "latin1.py").write_bytes("# Ce fichier décrit la configuration générale.\n".encode("latin-1"))
    (root / "utf16.txt").write_bytes("hello from UTF-16\n".encode("utf-16"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "huge.js").write_bytes(b"var a = 1;\n" * 1000)
    (root / "broken-link").symlink_to(root / "nowhere")
    (root / "new\nline.py").write_text("y = 2\n")
    (root / os.fsdecode(b"caf\xe9.py")).write_text("x = 1\n")
    (root / "empty.py").write_bytes(b"")
    rows, metrics = pull_rows(make_context, smoke_cfg, [{"name": "t/bad", "path": str(root)}], max_file_bytes=5000)
    by_path = {r["path"]: r for r in rows}
    assert sorted(by_path) == ["empty.py", "latin1.py", "new\nline.py", "utf16.txt"]
    assert by_path["latin1.py"]["content"] == "# Ce fichier décrit la configuration générale.\n"
    assert by_path["utf16.txt"]["src_encoding"] == "UTF-16"
    assert by_path["utf16.txt"]["length_bytes"] == len(b"hello from UTF-16\n")
    skipped = {k: n for k, n in metrics["skipped"].items() if n}
    assert skipped == {"binary": 1, "too_large": 1, "symlink": 1, "undecodable_path": 1}


def test_empty_git_repository_is_counted(make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
                                         tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    rows, metrics = pull_rows(make_context, smoke_cfg, [{"name": "t/empty", "path": str(tmp_path)}])
    assert rows == [] and metrics["skipped"]["empty_repository"] == 1


def test_licenses_follow_directories_as_bigcode_propagated_them(make_context: Callable[..., StageContext],
                                                                smoke_cfg: DictConfig, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    (root / "gpl_part").mkdir(parents=True)
    (root / "LICENSE").write_text(MIT)
    (root / "main.py").write_text("print('mit')\n")
    (root / "gpl_part" / "COPYING").write_text(GPL3)
    (root / "gpl_part" / "tool.py").write_text("print('gpl')\n")
    readme_only = tmp_path / "readme_only"
    readme_only.mkdir()
    (readme_only / "README.md").write_text("# Tool\n\nThis project is licensed under the Apache License 2.0.\n")
    (readme_only / "tool.py").write_text("print('apache')\n")
    unlicensed = tmp_path / "unlicensed"
    unlicensed.mkdir()
    (unlicensed / "README.md").write_text("# Tool\n\nNo words about terms here.\n")
    (unlicensed / "a.py").write_text("print('none')\n")
    declared = tmp_path / "declared"
    declared.mkdir()
    (declared / "COPYING").write_text(GPL3)
    (declared / "b.py").write_text("print('declared')\n")
    rows, metrics = pull_rows(make_context, smoke_cfg, [
        {"name": "t/mixed", "path": str(root)}, {"name": "t/readme", "path": str(readme_only)},
        {"name": "t/unlicensed", "path": str(unlicensed)},
        # A license declared for the repository (as GHArchive's was) wins over its files.
        {"name": "t/declared", "path": str(declared), "license": "MIT"}])
    got = {(r["repo_name"], r["path"]): (r["license_type"], r["detected_licenses"]) for r in rows}
    assert got[("t/mixed", "main.py")] == ("permissive", ["MIT"])
    assert got[("t/mixed", "gpl_part/tool.py")] == ("non_permissive", ["GPL-3.0-only", "MIT"])
    assert got[("t/readme", "tool.py")] == ("permissive", ["Apache-2.0"])
    assert got[("t/unlicensed", "a.py")] == ("no_license", [])
    assert got[("t/declared", "b.py")] == ("permissive", ["GPL-3.0-only"])
    origin = metrics["origins"]["t/mixed"]
    assert origin["files_by_license_type"] == {"non_permissive": 2, "permissive": 2}
    assert origin["detected_licenses"] == ["GPL-3.0-only", "MIT"]
