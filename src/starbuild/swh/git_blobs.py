"""Blob bytes out of a git repository in bulk: the checked-out file when it hashes to the blob, else one
`git cat-file --batch` process per origin.

Reading objects through dulwich costs tens of microseconds each in Python (zlib and delta chains);
git's own reader streams them for a fraction of that, but inflating packed objects still costs git
more CPU than reading the same bytes from the work tree, which is what `git hash-object` reads. A
work-tree file counts only when its sha1_git is the blob's id (computed anyway for `content_id`), so
local edits, line-ending filters or another checked-out branch only send that file to git. Without a
`git` executable, dulwich reads the objects.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from starbuild.swh.hashing import sha1_git


def read_blobs(root: Path, repo: Any, shas: Sequence[bytes]) -> Iterator[bytes | None]:
    """The bytes of every blob of `shas` (hex, as dulwich gives them), in order; None for a missing one."""
    git = shutil.which("git")
    if git is None:
        yield from _read_with_dulwich(repo, shas)
        return
    with subprocess.Popen([git, "cat-file", "--batch"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as batch:
        assert batch.stdin is not None and batch.stdout is not None
        # Requests go in from a thread: writing all of them first could fill the pipe git answers on.
        feeder = threading.Thread(target=_request, args=(batch.stdin, shas), daemon=True)
        feeder.start()
        for _ in shas:
            yield _answer(batch.stdout)
        feeder.join()
    if batch.returncode:
        raise OSError(f"git cat-file --batch failed in {root} (exit {batch.returncode})")


def _request(stdin: IO[bytes], shas: Sequence[bytes]) -> None:
    try:
        for sha in shas:
            stdin.write(sha + b"\n")
    finally:
        stdin.close()


def _answer(stdout: IO[bytes]) -> bytes | None:
    """One answer of `git cat-file --batch`: `<sha> blob <size>` then the bytes, or `<sha> missing`."""
    header = stdout.readline().split()
    if len(header) != 3:
        if header[-1:] == [b"missing"]:
            return None
        raise OSError(f"unexpected answer from git cat-file: {b' '.join(header)!r}")
    data = stdout.read(int(header[2]))
    stdout.read(1)  # the newline after the bytes
    return data


def _read_with_dulwich(repo: Any, shas: Sequence[bytes]) -> Iterator[bytes | None]:
    for sha in shas:
        try:
            yield repo[sha].data
        except KeyError:  # a shallow or damaged clone: the tree names a blob the repository lacks
            yield None


def read_checked_out(root: bytes, path: str, oid: bytes) -> bytes | None:
    """The bytes of the work-tree file `path` under `root` (`os.fsencode`d, ending in a slash) when they are
    the blob `oid` (its binary id), else None."""
    try:
        # No link is followed and no FIFO waited on: only a regular file can hold the blob.
        fd = os.open(root + os.fsencode(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return None
        data = os.read(fd, status.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if sha1_git(data) == oid else None
