"""Released artifacts for consumers: `starbuild.artifacts.get("model", version="v0.1.0", repo=URL)`.

A release (`make release`) tags `<artifact>@<version>`; this resolves the tag with `dvc.api`, downloads
the artifact's files from the DVC remote once into a local cache, and returns the local path.
"""

from __future__ import annotations

import os
from pathlib import Path

from starbuild.core.shards import atomic_output


def default_cache_dir() -> Path:
    """Where downloaded artifacts are kept: $XDG_CACHE_HOME/starbuild/artifacts (~/.cache by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "starbuild" / "artifacts"


def get(name: str, version: str | None = None, repo: str | None = None, cache_dir: Path | None = None) -> Path:
    """The local path of artifact `name` at `version` (the newest if None) of the repository `repo`.

    `repo` is a git URL or path (None: the repository around the working directory). The files are
    downloaded on the first call for a given commit and reused after.
    """
    from dvc.api import DVCFileSystem, artifacts_show

    found = artifacts_show(name, version=version, repo=repo)
    rev, path = found["rev"], found["path"]
    target = Path(cache_dir or default_cache_dir()) / name / rev / Path(path).name
    if not target.exists():
        with atomic_output(target.parent) as tmp:
            DVCFileSystem(repo, rev=rev).get(path, str(tmp / Path(path).name), recursive=True)
    return target
