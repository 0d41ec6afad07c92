"""Shared fixtures: the real composed config (shrunk by `experiment=smoke`) and stage contexts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from starbuild.core.config import compose
from starbuild.core.stage import StageContext

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_cfg() -> DictConfig:
    """conf/ composed with the smoke preset, as a stage would see it."""
    return compose(["experiment=smoke"], conf_dir=REPO_ROOT / "conf")


@pytest.fixture
def make_context(tmp_path: Path, smoke_cfg: DictConfig) -> Callable[..., StageContext]:
    """Build a StageContext whose inputs and outputs live under tmp_path."""

    def _make(name: str, cfg: DictConfig | None = None) -> StageContext:
        return StageContext(name=name, cfg=cfg or smoke_cfg, root=tmp_path, out_root=tmp_path)

    return _make
