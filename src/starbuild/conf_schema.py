"""The typed schema of conf/, registered with Hydra's ConfigStore as `starbuild_schema`.

`conf/config.yaml` lists `starbuild_schema` first in its defaults, so every composition
(`make params`, `dvc exp run -S …`, a stage run by hand) rejects an unknown key or a value of the
wrong type, naming the key and the file. Each section's schema is the dataclass its stage reads
the section into (the one definition of its keys); value ranges are checked by those dataclasses
when a stage reads its section, and by `make params` for every section (`check_sections`).
DVC loads this module through `src/dvc_plugins/hydra_plugins/` (`hydra.plugins_path` in .dvc/config).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from starbuild.clean.pii import CleanConfig
from starbuild.core.config import typed_section
from starbuild.dedup.stage import DedupConfig
from starbuild.determinism import RuntimeConfig
from starbuild.eval.config import EvalConfig
from starbuild.format.mixture import MixtureConfig
from starbuild.format.stage import FormatConfig
from starbuild.issues.stage import IssuesConfig
from starbuild.model.starcoder2 import ModelConfig
from starbuild.swh.source import SourceConfig
from starbuild.tokenizer.bpe import BpeConfig
from starbuild.tokenizer.pack import PackConfig
from starbuild.train.config import OptimConfig, TrainConfig, TrainerConfig

SCHEMA_NAME = "starbuild_schema"


@dataclasses.dataclass
class FilterSchema:
    """The `filter` section: an ordered mapping from drop reason to a rule's `_target_` node."""

    rules: dict[str, Any] = MISSING
    # Files kept per rule in data/filter_rejects/ for inspection (0: none).
    keep_rejects: int = 0


# Config key -> the dataclass a stage reads it into. Sections built with `_target_` by
# hydra.utils.instantiate (executor) or holding `_target_` nodes (filter rules) are checked there.
SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "issues": IssuesConfig,
    "dedup": DedupConfig,
    "clean": CleanConfig,
    "format": FormatConfig,
    "mixture": MixtureConfig,
    "tokenizer.bpe": BpeConfig,
    "tokenizer.pack": PackConfig,
    "model": ModelConfig,
    "trainer": TrainerConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "runtime": RuntimeConfig,
}


def mutable_schema(cls: type) -> type:
    """A plain (not frozen) copy of a section dataclass, its fields' types and defaults only.

    Hydra merges the group files into the schema, which a frozen dataclass would refuse.
    """
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], dataclasses.field(default_factory=f.default_factory)))
            continue
        default = f.default if f.default is not dataclasses.MISSING else MISSING
        fields.append((f.name, hints[f.name], dataclasses.field(default=default)))
    return _published(dataclasses.make_dataclass(cls.__name__, fields))


def _published(cls: type) -> type:
    """`cls` reachable as `Schema<name>` of this module, so the composed config pickles (Hydra's joblib
    launcher ships it to its worker processes) and unpickles there; its name, which errors show, is kept."""
    cls.__module__ = __name__
    cls.__qualname__ = f"Schema{cls.__name__}"
    globals()[cls.__qualname__] = cls
    return cls


def _root_schema() -> type:
    """The whole config in DAG order: `seed`, one typed node per section, `executor` left to its `_target_`."""

    def node(schema: Any) -> tuple[Any, Any]:
        return schema, dataclasses.field(default=MISSING)

    tokenizer = _published(dataclasses.make_dataclass("TokenizerConfig", [
        ("bpe", *node(mutable_schema(BpeConfig))),
        ("pack", *node(mutable_schema(PackConfig))),
    ]))
    sections = {key: mutable_schema(cls) for key, cls in SECTIONS.items() if "." not in key}
    order = ["source", "filter", "issues", "dedup", "clean", "format", "mixture", "tokenizer", "model", "trainer",
             "optim", "train", "eval", "runtime"]
    types = {**sections, "filter": FilterSchema, "tokenizer": tokenizer}
    fields = [("seed", *node(int))] + [(key, *node(types[key])) for key in order] + [("executor", *node(Any))]
    return _published(dataclasses.make_dataclass("StarbuildConfig", fields))


def check_sections(cfg: DictConfig) -> None:
    """Read every section into its dataclass, so a value out of range fails with its key."""
    for key, cls in SECTIONS.items():
        typed_section(cfg, key, cls)


ConfigStore.instance().store(name=SCHEMA_NAME, node=_root_schema())
