"""`make release VERSION=v0.1.0`: push every out to the DVC remote and tag each artifact of dvc.yaml.

The tags are GTO's annotated `<artifact>@<version>` tags, which `dvc artifacts get --rev <version>`
and `dvc.api.artifacts_show` read; they go to the git remote too, so a consumer needs only the
repository URL. Refuses, in one line and before touching anything, when the workspace or the
pipeline is not clean, when the version is malformed, or when it was released already.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from starbuild.core import layout
from starbuild.core.config import ConfigError, find_repo_root

VERSION = re.compile(r"v\d+\.\d+\.\d+")


class ReleaseError(RuntimeError):
    """The release cannot go ahead; the message names the fix."""


def _run(root: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True)


def _last_error(result: subprocess.CompletedProcess) -> str:
    """The most telling line of a failed command's output: DVC's last ERROR line, else the last line."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]


def artifact_names(root: Path) -> list[str]:
    """The artifacts dvc.yaml declares, in order."""
    spec = yaml.safe_load((root / layout.DVC_YAML).read_text(encoding="utf-8"))
    return list(spec.get("artifacts") or {})


def release_tags(root: Path, version: str) -> list[str]:
    """The tags a release of `version` creates: one `<artifact>@<version>` per artifact."""
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"VERSION must look like v1.2.3, got {version!r}")
    names = artifact_names(root)
    if not names:
        raise ReleaseError(f"{layout.DVC_YAML} declares no `artifacts:`; nothing to release")
    return [f"{name}@{version}" for name in names]


def check_clean(root: Path) -> None:
    """Refuse a workspace with uncommitted files or a pipeline whose outs differ from dvc.lock."""
    dirty = _run(root, "git", "status", "--porcelain").stdout.splitlines()
    if dirty:
        raise ReleaseError(f"the workspace has uncommitted changes ({dirty[0].strip()}, …); commit or stash them first")
    status = _run(root, "dvc", "status", "--json")
    if status.returncode != 0:
        raise ReleaseError(f"`dvc status` failed: {_last_error(status)}")
    changed = sorted(json.loads(status.stdout or "{}"))
    if changed:
        raise ReleaseError(f"`dvc status` is not clean ({', '.join(changed)}); run `dvc repro` and commit dvc.lock")


def check_unreleased(root: Path, tags: list[str], git_remote: str | None) -> None:
    """Refuse a version whose tags exist here or on the git remote."""
    existing = set(_run(root, "git", "tag", "--list").stdout.split())
    if git_remote:
        listed = _run(root, "git", "ls-remote", "--tags", git_remote).stdout.split()
        existing |= {ref.removeprefix("refs/tags/").removesuffix("^{}") for ref in listed if ref.startswith("refs/")}
    taken = [tag for tag in tags if tag in existing]
    if taken:
        version = tags[0].split("@", 1)[1]
        raise ReleaseError(f"tag {taken[0]} exists: {version} is released already; choose another VERSION")


def git_remote_of(root: Path, name: str) -> str | None:
    """`name` if the repository has that git remote, else None (the tags then stay local)."""
    return name if name in _run(root, "git", "remote").stdout.split() else None


def release(root: Path, version: str, dvc_remote: str | None = None, git_remote: str = "origin") -> list[str]:
    """Check, push every out, tag every artifact and push the tags; return the tags created."""
    tags = release_tags(root, version)
    remote = git_remote_of(root, git_remote)
    check_unreleased(root, tags, remote)
    check_clean(root)
    push = _run(root, "dvc", "push", *(["-r", dvc_remote] if dvc_remote else []))
    if push.returncode != 0:
        raise ReleaseError(f"`dvc push` failed: {_last_error(push)}; check the remote (`dvc remote list`) and "
                           "its credentials (.dvc/config.local or the environment)")
    for tag in tags:
        name = tag.split("@", 1)[0]
        created = _run(root, "git", "tag", "--annotate", tag, "--message",
                       f"Registering artifact {name} version {version}")
        if created.returncode != 0:
            raise ReleaseError(f"`git tag {tag}` failed: {_last_error(created)}")
    if remote:
        pushed = _run(root, "git", "push", remote, "HEAD", *(f"refs/tags/{tag}" for tag in tags))
        if pushed.returncode != 0:
            raise ReleaseError(f"the data is pushed and tagged here, but `git push {remote}` failed: "
                               f"{_last_error(pushed)}; push the tags by hand")
    return tags


def main(argv: list[str] | None = None) -> int:
    """Release the committed, reproduced workspace as VERSION."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("version", help="v<major>.<minor>.<patch>, e.g. v0.1.0")
    parser.add_argument("--remote", help="the DVC remote to push to (default: the default remote)")
    parser.add_argument("--git-remote", default="origin", help="where the tags go (default: origin, if it exists)")
    args = parser.parse_args(argv)
    try:
        tags = release(find_repo_root(), args.version, args.remote, args.git_remote)
    except (ReleaseError, ConfigError) as err:
        print(f"error: release: {err}", file=sys.stderr)
        return 2
    print(f"released {args.version}: pushed every out and tagged {', '.join(tags)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
