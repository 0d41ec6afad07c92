"""Shared fixtures: the real composed config (shrunk by `experiment=smoke`) and stage contexts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.config import compose
from starbuild.core.stage import StageContext
from starbuild.determinism import RuntimeConfig, pin
from tests.factories import stage_context
from tests.projects import fresh_project, sh

REPO_ROOT = Path(__file__).resolve().parents[1]

# The train and eval stages pin torch's threads and CPU kernels before it computes. Tests run them
# in this one process after other tests computed, so the process is pinned once, here, first, to
# the default runtime section (the kernels cannot change once torch has used them).
pin(RuntimeConfig(**yaml.safe_load((REPO_ROOT / "conf/runtime/default.yaml").read_text(encoding="utf-8"))))
# The DAG's stages in order, and those that write metrics/<stage>.json: read from dvc.yaml.
STAGES = list(layout.dag_stages(REPO_ROOT))
METRICS_STAGES = [
    stage
    for stage, spec in layout.dag_stages(REPO_ROOT).items()
    if layout.metrics_file(stage) in layout.declared_paths(spec, "metrics")
]


@pytest.fixture(scope="session")
def smoke_cfg() -> DictConfig:
    """conf/ composed with the smoke preset, as a stage would see it."""
    return compose(["experiment=smoke"], conf_dir=REPO_ROOT / "conf")


@pytest.fixture
def make_context(tmp_path: Path, smoke_cfg: DictConfig) -> Callable[..., StageContext]:
    """Build a StageContext whose inputs and outputs live under tmp_path."""

    def _make(name: str, cfg: DictConfig | None = None) -> StageContext:
        return stage_context(name, cfg or smoke_cfg, tmp_path)

    return _make


@dataclass(frozen=True)
class SmokeBuild:
    """The smoke project after one `dvc repro` of the whole DAG, and what that repro printed."""

    project: Path
    repro_output: str

    def copy_to(self, dest: Path) -> Path:
        """A private copy (git history, DVC cache and outs) for a module that changes what it works on."""
        shutil.copytree(self.project, dest, symlinks=True)
        return dest


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory: pytest.TempPathFactory) -> SmokeBuild:
    """The whole DAG built once per session (~1 min); the modules that need a built project copy it."""
    project = fresh_project(tmp_path_factory.mktemp("smoke_build") / "project")
    return SmokeBuild(project, sh(project, "dvc", "repro"))
