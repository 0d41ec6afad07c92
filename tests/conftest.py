"""Shared fixtures: the real composed config (shrunk by `experiment=smoke`) and stage contexts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.config import compose
from starbuild.core.stage import StageContext
from starbuild.determinism import RuntimeConfig, pin
from tests.factories import stage_context

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
