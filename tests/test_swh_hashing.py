"""SWHIDs computed with hashlib agree with git and with swh.model."""

from __future__ import annotations

from pathlib import Path

import pytest

from starbuild.swh.hashing import sha1_git
from starbuild.swh.origins import Origin, walk_directory
from tests.factories import git, make_tree

CONTENTS = [b"", b"print('hi')\n", "héllo wörld\n".encode(), bytes(range(256)) * 3]


@pytest.mark.parametrize("data", CONTENTS)
def test_content_id_matches_git_hash_object(tmp_path: Path, data: bytes) -> None:
    assert sha1_git(data).hex() == git(tmp_path, "hash-object", "--stdin", data=data)


def test_directory_id_matches_git_write_tree(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_tree(root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    expected = git(root, "write-tree")
    snapshot = walk_directory(Origin("t", root), [".git"], lambda f: None)
    assert snapshot.directory_id == expected


def test_directory_id_matches_swh_model_with_empty_dirs_and_excludes(tmp_path: Path) -> None:
    from swh.model.from_disk import Directory, ignore_directories_patterns

    root = tmp_path / "origin"
    make_tree(root)
    (root / "empty_dir").mkdir()
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00bytecode")
    swh_dir = Directory.from_disk(
        path=bytes(root),
        path_filter=ignore_directories_patterns(bytes(root), [b"__pycache__"]),
        max_content_length=None,
    )
    snapshot = walk_directory(Origin("t", root), ["__pycache__"], lambda f: None)
    assert f"swh:1:dir:{snapshot.directory_id}" == str(swh_dir.swhid())


def test_walk_reports_every_regular_file_once(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_tree(root)
    seen = []
    snapshot = walk_directory(Origin("t", root), [], lambda f: seen.append((f.path, f.executable)))
    assert sorted(seen) == [("deep/er/data.bin", False), ("empty.txt", False), ("pkg-a.txt", False),
                            ("pkg/mod.py", False), ("run.sh", True)]
    assert snapshot.skipped == {"symlink": 1}
