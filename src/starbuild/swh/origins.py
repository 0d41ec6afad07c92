"""Local origins: a directory or git repository, named and licensed, resolved from config."""

from __future__ import annotations

import importlib.metadata
import os
import stat
import sys
from binascii import unhexlify
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple

from starbuild.swh import licenses
from starbuild.swh.git_blobs import read_blobs, read_checked_out
from starbuild.swh.hashing import (
    MODE_DIRECTORY,
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SUBMODULE,
    MODE_SYMLINK,
    Branch,
    TreeEntry,
    git_object_id,
    sha1_git,
    snapshot_id,
    tree_id,
)


class OriginError(ValueError):
    """An origin in the config cannot be read; the message names the fix."""


@dataclass(frozen=True)
class Origin:
    """One repository to pull: where it lives, which branch, and the licenses declared for it as a whole."""

    name: str
    root: Path
    # Declared for the whole repository (package metadata, or `license` in conf), as GHArchive's repository
    # license was for The Stack v2: when given it decides every file's license_type.
    declared_licenses: list[str] = field(default_factory=list)
    # The git branch to pull; None = the default branch (what HEAD points at).
    branch: str | None = None

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
    # The bytes' sha1_git (hex) when the reader has computed it already.
    content_id: str | None = None


@dataclass(frozen=True)
class Part:
    """Which share of an origin's entries one task pulls: the `index`-th of `count` runs of consecutive paths."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"part {self.index} of {self.count} does not exist")

    def of(self, total: int) -> range:
        """The positions, among `total` entries sorted by path, that this part pulls."""
        return range(self.index * total // self.count, (self.index + 1) * total // self.count)


WHOLE = Part()


@dataclass
class Checkout:
    """The origin-level ids and dates of what was pulled, and what walking it did not pull, by reason."""

    directory_id: str = ""
    snapshot_id: str | None = None
    revision_id: str | None = None
    branch_name: str | None = None
    visit_date: datetime | None = None
    revision_date: datetime | None = None
    committer_date: datetime | None = None
    # Repository popularity, when the source knows it (The Stack v2 counted GHArchive events).
    stars: int | None = None
    forks: int | None = None
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
    else:
        raise OriginError(f"{where} ({name}) needs `path` or `distribution` + `subdir` in conf/source/")
    if not root.is_dir():
        raise OriginError(f"origin '{name}': {root} is not a directory; fix {where} in conf/source/")
    if not os.access(root, os.R_OK | os.X_OK):
        raise OriginError(f"origin '{name}': {root} is not readable; fix its permissions or {where}")
    chosen = licenses.parse_expression(str(entry["license"])) if entry.get("license") else declared
    branch = str(entry["branch"]) if entry.get("branch") else None
    return Origin(name=str(name), root=root, declared_licenses=chosen, branch=branch)


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
) -> Checkout:
    """Visit every regular file of a plain directory origin and compute its directory SWHID."""
    checkout = Checkout()
    root_tree = _walk(origin.root, "", exclude, on_file, checkout)
    checkout.directory_id = root_tree.hex()
    return checkout


def _walk(
    directory: Path, prefix: str, exclude: list[str], on_file: Callable[[OriginFile], None], snap: Checkout
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
            content_id = sha1_git(data)
            entries.append(TreeEntry(name, MODE_EXECUTABLE if executable else MODE_FILE, content_id))
            on_file(OriginFile(rel, data, executable, content_id.hex()))
        else:
            snap.skip("special_file")
    return tree_id(entries)


def walk_git(origin: Origin, on_file: Callable[[OriginFile], None], part: Part = WHOLE,
             on_context: Callable[[OriginFile], None] | None = None) -> Checkout:
    """Visit every blob of the branch's head commit (the working tree is not read) and compute every id.

    The snapshot covers all the repository's refs as SWH's git loader records them (HEAD an alias); the
    directory and revision ids are computed here from the objects, not taken from git's names for them.
    With a `part`, only that share of the entries (sorted by path) is visited and counted; the license
    files outside it that license its files (in their directories or above) go to `on_context` when given.
    """
    from dulwich.repo import Repo

    repo = Repo(str(origin.root))
    branches = git_branches(repo)
    checkout = Checkout(snapshot_id=snapshot_id(branches).hex())
    if not any(b.target_type in ("revision", "release") for b in branches.values()):
        if part.index == 0:
            checkout.skip("empty_repository")
        return checkout
    branch = _chosen_branch(repo, origin, branches)
    commit = repo[repo.refs[branch]]
    while commit.type_name == b"tag":  # a configured tag name: pull the commit it points at
        commit = repo[commit.object[1]]
    checkout.branch_name = branch.decode("utf-8", "surrogateescape")
    checkout.revision_id = git_object_id(b"commit", commit.as_raw_string()).hex()
    checkout.revision_date = datetime.fromtimestamp(commit.author_time, tz=UTC)
    checkout.committer_date = datetime.fromtimestamp(commit.commit_time, tz=UTC)
    entries: list[_GitEntry] = []
    checkout.directory_id = _walk_git_tree(repo, commit.tree, "", entries).hex()
    entries.sort(key=lambda e: e.path)
    mine = part.of(len(entries))
    # Only license files in the part's directories or above them license its files.
    cut = on_context is not None and part.count > 1
    governing = licenses.licensing_directories(entries[i].path for i in mine if not entries[i].skip) if cut else set()
    wanted: list[tuple[_GitEntry, Callable[[OriginFile], None]]] = []
    for position, entry in enumerate(entries):
        if position in mine:
            if entry.skip:
                checkout.skip(entry.skip)
            else:
                wanted.append((entry, on_file))
        elif (cut and not entry.skip and licenses.applies_to(entry.path, governing)
              and licenses.is_license_file(entry.path)):
            wanted.append((entry, on_context))
    root = os.path.join(os.fsencode(origin.root), b"")
    found = [read_checked_out(root, entry.path, entry.oid) for entry, _ in wanted]
    checked_out = [data is not None for data in found]
    from_git = [i for i, data in enumerate(found) if data is None]
    for i, data in zip(from_git, read_blobs(origin.root, repo, [wanted[i][0].sha for i in from_git]), strict=True):
        found[i] = data
    for (entry, visit), data, verified in zip(wanted, found, checked_out, strict=True):
        if data is not None:
            visit(OriginFile(entry.path, data, entry.executable, entry.sha.decode() if verified else None))
        elif visit is on_file:
            checkout.skip("missing_object")
    return checkout


class _GitEntry(NamedTuple):
    """A non-directory entry of a git tree: a blob to read, or a link or submodule to count (`skip`). A tuple:
    a walk makes one per file."""

    path: str
    sha: bytes  # hex, as git names it
    oid: bytes  # the same id, binary
    executable: bool = False
    skip: str | None = None


_GIT_TYPES = {1: "revision", 2: "directory", 3: "content", 4: "release"}
# What os.fsdecode decodes a git name with, looked up once for a walk's thousands of names.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def git_branches(repo: Any) -> dict[bytes, Branch]:
    """Every ref of a dulwich repository as a snapshot branch: symbolic refs are aliases, lost targets dangle."""
    branches: dict[bytes, Branch] = {}
    for name, target in repo.refs.as_dict().items():
        try:
            type_num, _ = repo.object_store.get_raw(target)
        except KeyError:
            branches[name] = Branch("dangling")
            continue
        branches[name] = Branch(_GIT_TYPES[type_num], bytes.fromhex(target.decode()))
    for name, target in repo.refs.get_symrefs().items():
        branches[name] = Branch("alias", target)
    return branches


def _chosen_branch(repo: Any, origin: Origin, branches: dict[bytes, Branch]) -> bytes:
    """The configured branch as a full ref name, or the one HEAD points at; fails listing the branches."""
    if origin.branch is None:
        head = branches.get(b"HEAD")
        return head.target if head is not None and head.target_type == "alias" else b"HEAD"
    wanted = origin.branch.encode()
    for candidate in (wanted, b"refs/heads/" + wanted, b"refs/tags/" + wanted):
        if candidate in branches and branches[candidate].target_type in ("revision", "release"):
            return candidate
    heads = sorted(n.decode("utf-8", "replace") for n in branches if n.startswith(b"refs/heads/"))
    raise OriginError(f"origin '{origin.name}': branch '{origin.branch}' is not in {origin.root}; "
                      f"choose one of: {', '.join(heads) or '(none)'}")


def _walk_git_tree(repo: Any, tree_sha: bytes, prefix: str, found: list[_GitEntry]) -> bytes:
    """The tree's id, computed from its entries; its non-directory entries are added to `found`."""
    entries: list[TreeEntry] = []
    for name, mode, sha in repo[tree_sha].iteritems():
        rel = prefix + name.decode(_FS_ENCODING, _FS_ERRORS)
        if stat.S_ISDIR(mode):
            entries.append(TreeEntry(name, MODE_DIRECTORY, _walk_git_tree(repo, sha, rel + "/", found)))
            continue
        target = unhexlify(sha)
        if stat.S_ISLNK(mode):
            entries.append(TreeEntry(name, MODE_SYMLINK, target))
            found.append(_GitEntry(rel, sha, target, skip="symlink"))
        elif mode == 0o160000:
            entries.append(TreeEntry(name, MODE_SUBMODULE, target))
            found.append(_GitEntry(rel, sha, target, skip="submodule"))
        elif mode & 0o111:
            entries.append(TreeEntry(name, MODE_EXECUTABLE, target))
            found.append(_GitEntry(rel, sha, target, True))
        else:
            entries.append(TreeEntry(name, MODE_FILE, target))
            found.append(_GitEntry(rel, sha, target))
    return tree_id(entries)
