"""Intrinsic identifiers computed with hashlib: sha1, sha1_git (SWHID cnt) and git trees (SWHID dir)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

MODE_FILE = b"100644"
MODE_EXECUTABLE = b"100755"
MODE_SYMLINK = b"120000"
MODE_DIRECTORY = b"40000"
MODE_SUBMODULE = b"160000"


def sha1_hex(data: bytes) -> str:
    """SHA-1 of the bytes: The Stack v2 `blob_id` (SWH `sha1`)."""
    return hashlib.sha1(data).hexdigest()


def sha1_git(data: bytes) -> bytes:
    """The git blob id of `data` as 20 raw bytes (SWH `sha1_git`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def content_swhid(sha1_git_hex: str) -> str:
    """The core SWHID of a content object."""
    return f"swh:1:cnt:{sha1_git_hex}"


def directory_swhid(tree_hex: str) -> str:
    """The core SWHID of a directory object."""
    return f"swh:1:dir:{tree_hex}"


class TreeEntry(NamedTuple):
    """One entry of a git tree / SWH directory manifest (a tuple: a walk makes one per file)."""

    name: bytes
    mode: bytes
    target: bytes  # 20 raw bytes

    def sort_key(self) -> bytes:
        # git sorts directories as if their name ended in '/', so `pkg` sorts after `pkg-a.txt`.
        return self.name + b"/" if self.mode == MODE_DIRECTORY else self.name


def tree_id(entries: list[TreeEntry]) -> bytes:
    """The git tree id (= SWH directory id) of a directory with `entries`, as raw bytes."""
    body = b"".join(
        e.mode + b" " + e.name + b"\0" + e.target for e in sorted(entries, key=TreeEntry.sort_key)
    )
    return git_object_id(b"tree", body)


def git_object_id(kind: bytes, manifest: bytes) -> bytes:
    """The id of a git-style object (`commit`, `tag`, `snapshot`, …) with `manifest` as its body, raw bytes."""
    return hashlib.sha1(kind + b" %d\0" % len(manifest) + manifest).digest()


@dataclass(frozen=True)
class Branch:
    """One branch of a snapshot: a target object (raw id) of a type, an alias (target: a branch name) or dangling."""

    target_type: str  # revision | release | directory | content | snapshot | alias | dangling
    target: bytes = b""


def snapshot_id(branches: dict[bytes, Branch]) -> bytes:
    """The SWH snapshot id (swh:1:snp) of `branches`: SWH's manifest, which git has no equivalent of."""
    manifest = b"".join(
        b"%s %s\0%d:%s" % (branch.target_type.encode(), name, len(branch.target), branch.target)
        for name, branch in sorted(branches.items())
    )
    return git_object_id(b"snapshot", manifest)


def snapshot_swhid(snapshot_hex: str) -> str:
    """The core SWHID of a snapshot object."""
    return f"swh:1:snp:{snapshot_hex}"
