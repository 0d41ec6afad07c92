"""The `local` source: directories and git repositories on this machine (the embedded default)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from starbuild.swh.origins import WHOLE, Origin, OriginFile, Part, resolve, walk_directory, walk_git
from starbuild.swh.records import origin_rows
from starbuild.swh.source import OriginSummary, SourceConfig, write_origin


class LocalSource:
    """Origins that are local directories or git repositories (`source.kind: local`)."""

    def __init__(self, cfg: SourceConfig, repo_root: Path) -> None:
        self.cfg = cfg
        self.repo_root = repo_root

    def origins(self) -> list[Origin]:
        """Resolve every configured origin; names must be unique."""
        origins = [resolve(entry, i, self.repo_root) for i, entry in enumerate(self.cfg.origins)]
        names = [o.name for o in origins]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"origin names must be unique in source.origins; repeated: {', '.join(duplicates)}")
        return sorted(origins, key=lambda o: o.name)

    def origin_keys(self, origins: list[Origin]) -> list[str]:
        """The work cache's key of each origin (origin_key)."""
        return [self.origin_key(origin) for origin in origins]

    def origin_key(self, origin: Origin) -> str:
        """What the origin's rows depend on, for the work cache: a git branch's head commit, or every file's
        path, size and modification time of a directory (cheap to read, unlike the bytes)."""
        digest = hashlib.sha256(repr((origin.name, str(origin.root), origin.branch, origin.declared_licenses)).encode())
        if origin.is_git:
            from dulwich.repo import Repo

            repo = Repo(str(origin.root))
            ref = b"HEAD" if origin.branch is None else b"refs/heads/" + origin.branch.encode()
            try:
                digest.update(repo.refs[ref])
            except KeyError:  # no such branch: pulling it fails and names it, nothing is cached
                digest.update(b"no head")
        else:
            for path in sorted(p for p in origin.root.rglob("*") if p.is_file() or p.is_symlink()):
                stat = path.lstat()
                # fsencode: a file name need not be valid UTF-8.
                digest.update(os.fsencode(path.relative_to(origin.root)))
                digest.update(f"\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        return digest.hexdigest()

    def file_counts(self, origins: list[Origin]) -> list[int | None]:
        """About how many files each git origin's branch holds (git's own listing, milliseconds); None where
        the origin cannot be pulled in parts (a plain directory is read whole to compute its ids)."""
        git = shutil.which("git")
        counts: list[int | None] = []
        for origin in origins:
            if git is None or not origin.is_git:
                counts.append(None)
                continue
            listing = subprocess.run([git, "ls-tree", "-r", "-z", "--name-only", "--end-of-options",
                                      origin.branch or "HEAD"],
                                     cwd=origin.root, capture_output=True, check=False)
            counts.append(listing.stdout.count(b"\0") if listing.returncode == 0 else None)
        return counts

    def pull_origin(self, origin: Origin, destination: Path, part: Part = WHOLE) -> OriginSummary:
        """Walk the origin (a git repository's branch head, or a directory) and write its rows; a `part` of a
        git origin writes only that share of its files (the stage's parts together hold every row once)."""
        files: list[OriginFile] = []
        context: list[OriginFile] = []
        if origin.is_git:
            checkout = walk_git(origin, files.append, part, context.append)
        elif part == WHOLE:
            checkout = walk_directory(origin, list(self.cfg.exclude), files.append)
        else:
            raise ValueError(f"origin '{origin.name}' is a directory: it is pulled whole, not in parts")
        rows = origin_rows(origin.name, files, checkout, origin.declared_licenses, self.cfg.row_options(),
                           context=context)
        return write_origin(origin.name, rows, checkout, origin.declared_licenses, destination)
