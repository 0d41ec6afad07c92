"""Where a build came from: its git commit, every DVC out's md5, and the params that differ from the defaults."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from starbuild.core.config import compose
from starbuild.report.summary import flatten

# The paths whose uncommitted edits make a build differ from its commit (data and metrics are outputs).
CODE_PATHS = ("src", "conf", "stages", "dvc.yaml", "pyproject.toml", "requirements.lock")


def git_commit(root: Path) -> str:
    """HEAD's id, marked when the code paths have uncommitted changes; 'unknown' outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    commit = head.stdout.strip()
    return f"{commit} + uncommitted changes" if dirty.stdout.strip() else commit


def locked_outs(root: Path) -> dict[str, str]:
    """Every out's md5 in dvc.lock (the stages built so far), by path."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {out["path"]: out.get("md5", "") for stage in stages.values() for out in stage.get("outs", [])}


def changed_params(cfg: DictConfig, root: Path) -> dict[str, tuple[Any, Any]]:
    """Each param (dotted key) whose value differs from conf/'s defaults: (default, this build's)."""
    if not (root / "conf" / "config.yaml").is_file():
        return {}
    defaults = dict(flatten(OmegaConf.to_container(default_config(root), resolve=True)))
    built = dict(flatten(OmegaConf.to_container(cfg, resolve=True)))
    return {key: (defaults.get(key), built.get(key)) for key in sorted(set(defaults) | set(built))
            if defaults.get(key) != built.get(key)}



def default_config(root: Path) -> DictConfig:
    """conf/'s defaults composed, also from inside a running Hydra app (its global state set aside meanwhile)."""
    from hydra.core.global_hydra import GlobalHydra

    running = GlobalHydra.instance()
    saved = running.hydra
    running.clear()
    try:
        return compose([], conf_dir=root / "conf")
    finally:
        running.hydra = saved
