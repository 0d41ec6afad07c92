"""SWHIDs computed with hashlib agree with git and with swh.model."""

from __future__ import annotations

import os
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


@pytest.fixture
def branchy_repo(tmp_path: Path) -> Path:
    """A git repository with the objects SWH ids care about: several branches, both kinds of tag, a symlink."""
    root = tmp_path / "branchy"
    make_tree(root)
    (root / "empty_dir").mkdir()  # git does not track it, so neither does the revision's directory
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    dates = {"GIT_AUTHOR_DATE": "2021-03-04T05:06:07+09:00", "GIT_COMMITTER_DATE": "2022-01-02T03:04:05-05:00"}
    git(root, "commit", "-q", "-m", "first", env=dates)
    git(root, "tag", "-a", "v1", "-m", "release one")
    git(root, "tag", "light")
    git(root, "checkout", "-q", "-b", "dev")
    (root / "dev.py").write_text("DEV = True\n")
    git(root, "add", "dev.py")
    git(root, "commit", "-q", "-m", "dev work")
    git(root, "checkout", "-q", "main")
    return root


def test_git_origin_ids_match_git_and_swh_model(branchy_repo: Path) -> None:
    from swh.model.cli import swhid_of_git_repo
    from swh.model.hashutil import hash_git_data

    from starbuild.swh.origins import walk_git

    checkout = walk_git(Origin("t", branchy_repo), lambda f: None)
    assert checkout.directory_id == git(branchy_repo, "rev-parse", "HEAD^{tree}")
    assert checkout.revision_id == git(branchy_repo, "rev-parse", "HEAD")
    raw_commit = git(branchy_repo, "cat-file", "commit", "HEAD").encode() + b"\n"
    assert hash_git_data(raw_commit, "commit").hex() == checkout.revision_id
    assert f"swh:1:snp:{checkout.snapshot_id}" == str(swhid_of_git_repo(str(branchy_repo)))
    assert checkout.branch_name == "refs/heads/main"
    assert checkout.revision_date.isoformat() == "2021-03-03T20:06:07+00:00"
    assert checkout.committer_date.isoformat() == "2022-01-02T08:04:05+00:00"
    assert checkout.skipped == {"symlink": 1}


@pytest.mark.parametrize(("branch", "ref"), [("dev", "refs/heads/dev"), ("refs/heads/dev", "refs/heads/dev"),
                                             ("v1", "refs/tags/v1")])
def test_git_branch_is_configurable(branchy_repo: Path, branch: str, ref: str) -> None:
    from starbuild.swh.origins import walk_git

    paths: list[str] = []
    checkout = walk_git(Origin("t", branchy_repo, branch=branch), lambda f: paths.append(f.path))
    assert checkout.branch_name == ref
    assert checkout.revision_id == git(branchy_repo, "rev-parse", f"{branch}^{{commit}}")
    assert ("dev.py" in paths) == (branch != "v1")


def test_unknown_branch_names_the_choices(branchy_repo: Path) -> None:
    from starbuild.swh.origins import OriginError, walk_git

    with pytest.raises(OriginError, match="branch 'nope' is not in .*refs/heads/dev, refs/heads/main"):
        walk_git(Origin("t", branchy_repo, branch="nope"), lambda f: None)


def test_empty_git_repository_is_counted_not_fatal(tmp_path: Path) -> None:
    from starbuild.swh.origins import walk_git

    git(tmp_path, "init", "-q")
    checkout = walk_git(Origin("t", tmp_path), lambda f: None)
    assert checkout.skipped == {"empty_repository": 1} and checkout.revision_id is None


@pytest.mark.parametrize("reader", ["git", "dulwich"])
def test_git_blobs_read_alike_and_a_lost_blob_is_counted(branchy_repo: Path, reader: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from starbuild.swh import git_blobs
    from starbuild.swh.origins import walk_git

    if reader == "dulwich":
        monkeypatch.setattr(git_blobs.shutil, "which", lambda name: None)
    files: list = []
    checkout = walk_git(Origin("t", branchy_repo), files.append)
    assert {f.path: f.data for f in files} == {p: (branchy_repo / p).read_bytes() for p in
                                              ["empty.txt", "pkg-a.txt", "pkg/mod.py", "run.sh", "deep/er/data.bin"]}
    committed = (branchy_repo / "pkg/mod.py").read_bytes()
    # An edit in the work tree is not what the commit holds: the object is read instead.
    (branchy_repo / "pkg/mod.py").write_bytes(b"edited, not committed\n")
    files.clear()
    walk_git(Origin("t", branchy_repo), files.append)
    assert {f.path: f.data for f in files}["pkg/mod.py"] == committed
    lost = git(branchy_repo, "rev-parse", "HEAD:pkg/mod.py")
    (branchy_repo / ".git" / "objects" / lost[:2] / lost[2:]).unlink()
    files.clear()
    checkout = walk_git(Origin("t", branchy_repo), files.append)
    assert checkout.skipped == {"symlink": 1, "missing_object": 1}
    assert "pkg/mod.py" not in {f.path for f in files}
    assert checkout.directory_id == git(branchy_repo, "rev-parse", "HEAD^{tree}")
    # A lost object whose bytes the work tree still holds (they hash to its id) is pulled from there.
    (branchy_repo / "pkg/mod.py").write_bytes(committed)
    files.clear()
    checkout = walk_git(Origin("t", branchy_repo), files.append)
    assert checkout.skipped == {"symlink": 1} and {f.path: f.data for f in files}["pkg/mod.py"] == committed


def test_a_checked_out_file_counts_only_as_a_regular_file_holding_the_blob(tmp_path: Path) -> None:
    from starbuild.swh.git_blobs import read_checked_out

    blob = b"int x;\n"
    oid = sha1_git(blob)
    root = os.fsencode(tmp_path) + b"/"
    (tmp_path / "same.c").write_bytes(blob)
    (tmp_path / "edited.c").write_bytes(b"int y;\n")
    (tmp_path / "link.c").symlink_to("same.c")
    os.mkfifo(tmp_path / "fifo.c")  # opening it to read would wait for a writer
    (tmp_path / "dir.c").mkdir()
    assert read_checked_out(root, "same.c", oid) == blob
    for path in ("edited.c", "link.c", "fifo.c", "dir.c", "missing.c"):
        assert read_checked_out(root, path, oid) is None, path
