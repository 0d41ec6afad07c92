"""Every source by its `source.kind`, and the one that the config names."""

from __future__ import annotations

from pathlib import Path

from starbuild.swh.api import ApiSource
from starbuild.swh.graph import GraphSource
from starbuild.swh.local import LocalSource
from starbuild.swh.source import Source, SourceConfig
from starbuild.swh.stack_v2 import StackV2Source

SOURCES: dict[str, type] = {
    "local": LocalSource,
    "swh_graph": GraphSource,
    "stack_v2": StackV2Source,
    "swh_api": ApiSource,
}


def make_source(cfg: SourceConfig, repo_root: Path) -> Source:
    """The source named by `source.kind` (SourceConfig checks that it is one of SOURCES)."""
    return SOURCES[cfg.kind](cfg, repo_root)
