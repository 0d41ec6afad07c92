"""`make verify`: rebuild every stage with `dvc repro -f` in a fresh clone and compare each out with dvc.lock.

The clone is of the committed HEAD, so it checks the promise a user relies on: the committed
`dvc.lock` is what any x86 machine with the same `requirements.lock` rebuilds, md5 for md5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from starbuild.core.config import ConfigError, find_repo_root

LOCK = "dvc.lock"


@dataclass(frozen=True)
class OutCheck:
    """One out of one stage: the md5 dvc.lock promises and the one the rebuild gave."""

    stage: str
    path: str
    expected: str | None
    actual: str | None

    @property
    def same(self) -> bool:
        """Whether the rebuild reproduced the promised bytes."""
        return self.expected is not None and self.expected == self.actual


def lock_outs(lock_text: str) -> dict[str, dict[str, str]]:
    """stage -> {out path: md5} of a dvc.lock, stages in file (DAG) order."""
    stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    return {name: {out["path"]: out["md5"] for out in spec.get("outs", [])} for name, spec in stages.items()}


def compare(expected: dict[str, dict[str, str]], actual: dict[str, dict[str, str]]) -> list[OutCheck]:
    """Every out of every stage in `expected`'s order (then any only the rebuild has), expected vs rebuilt."""
    checks = []
    for stage in [*expected, *(s for s in actual if s not in expected)]:
        want, got = expected.get(stage, {}), actual.get(stage, {})
        for path in [*want, *(p for p in got if p not in want)]:
            checks.append(OutCheck(stage, path, want.get(path), got.get(path)))
    return checks


def report(checks: list[OutCheck]) -> str:
    """A table of every out, then the first stage whose outs differ (or that all match)."""
    lines = [f"{'stage':<10} {'out':<24} {'dvc.lock':<10} {'rebuilt':<10} result"]
    for c in checks:
        lines.append(f"{c.stage:<10} {c.path:<24} {(c.expected or '-')[:8]:<10} {(c.actual or '-')[:8]:<10} "
                     f"{'same' if c.same else 'DIFFERS'}")
    first = next((c for c in checks if not c.same), None)
    if first is None:
        lines.append(f"all {len(checks)} outs reproduce dvc.lock")
    else:
        lines.append(f"first stage that differs: {first.stage} ({first.path}); the stages after it read its outs")
    return "\n".join(lines)


def rebuild(root: Path, clone: Path) -> dict[str, dict[str, str]]:
    """Clone HEAD of `root` into `clone`, run `dvc repro -f` there and return its lock's outs."""
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["dvc", "repro", "-f"], cwd=clone, env=env, check=True)
    return lock_outs((clone / LOCK).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Rebuild in a temporary clone and print, per out, whether its md5 equals dvc.lock's."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the clone and print where it is")
    args = parser.parse_args(argv)
    try:
        root = find_repo_root()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    committed = subprocess.run(["git", "show", f"HEAD:{LOCK}"], cwd=root, capture_output=True, text=True)
    if committed.returncode != 0:
        print(f"error: no committed {LOCK} in {root}; run `make repro` and commit it", file=sys.stderr)
        return 2
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, check=True).stdout
    if dirty:
        print("note: uncommitted changes are not verified; the clone is of HEAD", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="starbuild-verify-"))
    try:
        actual = rebuild(root, workdir / "clone")
    except subprocess.CalledProcessError as err:
        print(f"error: `{' '.join(map(str, err.cmd))}` failed in {workdir / 'clone'}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    checks = compare(lock_outs(committed.stdout), actual)
    print(report(checks))
    if args.keep:
        print(f"clone kept at {workdir / 'clone'}")
    return 0 if all(c.same for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
