"""Local origins: a directory or git repository, named and licensed, resolved from config."""

from __future__ import annotations

import importlib.metadata
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from starbuild.swh import licenses
from starbuild.swh.hashing import (
    MODE_DIRECTORY,
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SYMLINK,
    TreeEntry,
    sha1_git,
    tree_id,
)


class OriginError(ValueError):
    """An origin in the config cannot be read; the message names the fix."""


@dataclass(frozen=True)
class Origin:
    """One repository to pull: where it lives and under which licenses."""

    name: str
    root: Path
    licenses: list[str] = field(default_factory=list)

    @property
    def is_git(self) -> bool:
        """Whether the origin is a git working copy (pulled from its HEAD commit)."""
        return (self.root / ".git").exists()


@dataclass(frozen=True)
class OriginFile:
    """A regular file of an origin, with its bytes."""

    path: str
    data: bytes
    executable: bool


@dataclass
class Snapshot:
    """What walking an origin found besides its regular files."""

    directory_id: str = ""
    revision_id: str | None = None
    revision_date: int | None = None  # seconds since the epoch, UTC
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one entry that is not pulled, under a named reason."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def resolve(entry: Mapping[str, Any], index: int, repo_root: Path) -> Origin:
    """Turn `source.origins[index]` into an Origin, or fail naming the config key to fix."""
    where = f"source.origins[{index}]"
    name = entry.get("name")
    if not name:
        raise OriginError(f"{where} has no name; give every origin a unique `name` in conf/source/")
    if entry.get("distribution"):
        root, declared = _distribution_root(entry, where)
    elif entry.get("path"):
        root = Path(str(entry["path"])).expanduser()
        root = root if root.is_absolute() else repo_root / root
        declared = []
        if root.is_dir() and os.access(root, os.R_OK | os.X_OK):
            declared = licenses.from_license_files(root)
    else:
        raise OriginError(f"{where} ({name}) needs `path` or `distribution` + `subdir` in conf/source/")
    if not root.is_dir():
        raise OriginError(f"origin '{name}': {root} is not a directory; fix {where} in conf/source/")
    if not os.access(root, os.R_OK | os.X_OK):
        raise OriginError(f"origin '{name}': {root} is not readable; fix its permissions or {where}")
    chosen = licenses.parse_expression(str(entry["license"])) if entry.get("license") else declared
    return Origin(name=str(name), root=root, licenses=chosen)


def _distribution_root(entry: Mapping[str, Any], where: str) -> tuple[Path, list[str]]:
    dist_name = str(entry["distribution"])
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as err:
        raise OriginError(
            f"origin '{entry['name']}': distribution '{dist_name}' is not installed; "
            f"run `make setup` (it must be in requirements.lock) or fix {where}"
        ) from err
    root = Path(str(dist.locate_file(str(entry.get("subdir", "")))))
    return root, licenses.from_metadata(dist.metadata)


def walk_directory(
    origin: Origin, exclude: list[str], on_file: Callable[[OriginFile], None]
) -> Snapshot:
    """Visit every regular file of a plain directory origin and compute its directory SWHID."""
    snapshot = Snapshot()
    root_tree = _walk(origin.root, "", exclude, on_file, snapshot)
    snapshot.directory_id = root_tree.hex()
    return snapshot


def _walk(
    directory: Path, prefix: str, exclude: list[str], on_file: Callable[[OriginFile], None], snap: Snapshot
) -> bytes:
    entries: list[TreeEntry] = []
    for item in sorted(os.scandir(directory), key=lambda e: e.name):
        if any(fnmatch(item.name, pattern) for pattern in exclude):
            continue
        rel = f"{prefix}{item.name}"
        name = os.fsencode(item.name)
        if item.is_symlink():
            target = os.fsencode(os.readlink(item.path))
            entries.append(TreeEntry(name, MODE_SYMLINK, sha1_git(target)))
            snap.skip("symlink")
        elif item.is_dir(follow_symlinks=False):
            subtree = _walk(Path(item.path), f"{rel}/", exclude, on_file, snap)
            entries.append(TreeEntry(name, MODE_DIRECTORY, subtree))
        elif item.is_file(follow_symlinks=False):
            try:
                data = Path(item.path).read_bytes()
            except OSError:
                snap.skip("unreadable")
                continue
            executable = bool(item.stat(follow_symlinks=False).st_mode & 0o111)
            entries.append(TreeEntry(name, MODE_EXECUTABLE if executable else MODE_FILE, sha1_git(data)))
            on_file(OriginFile(rel, data, executable))
        else:
            snap.skip("special_file")
    return tree_id(entries)


def walk_git(origin: Origin, on_file: Callable[[OriginFile], None]) -> Snapshot:
    """Visit every blob of the HEAD commit of a git origin (its working tree is not read)."""
    from dulwich.repo import Repo

    repo = Repo(str(origin.root))
    try:
        head = repo.head()
    except KeyError as err:
        raise OriginError(f"origin '{origin.name}': git repository {origin.root} has no commits") from err
    commit = repo[head]
    snapshot = Snapshot(
        directory_id=commit.tree.decode(), revision_id=head.decode(), revision_date=commit.commit_time
    )
    _walk_git_tree(repo, commit.tree, "", on_file, snapshot)
    return snapshot


def _walk_git_tree(repo: Any, tree_sha: bytes, prefix: str, on_file: Callable[[OriginFile], None],
                   snap: Snapshot) -> None:
    for item in sorted(repo[tree_sha].iteritems(), key=lambda i: i.path):
        rel = f"{prefix}{os.fsdecode(item.path)}"
        if stat.S_ISDIR(item.mode):
            _walk_git_tree(repo, item.sha, f"{rel}/", on_file, snap)
        elif stat.S_ISLNK(item.mode):
            snap.skip("symlink")
        elif item.mode == 0o160000:
            snap.skip("submodule")
        else:
            on_file(OriginFile(rel, repo[item.sha].data, bool(item.mode & 0o111)))
