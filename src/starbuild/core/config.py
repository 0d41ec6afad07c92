"""Compose `conf/` with Hydra exactly as `dvc exp run` does, write `params.yaml`, read typed sections."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_NAME = "config"
# Registers the typed schema with Hydra's ConfigStore. Imported by name, only to compose: no stage
# run by DVC composes (they read params.yaml), so the schema module is no stage's code dependency.
SCHEMA_MODULE = "starbuild.conf_schema"

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be composed; the message names the fix."""


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest directory above `start` (default: cwd) holding both dvc.yaml and conf/."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file() and (candidate / "conf").is_dir():
            return candidate
    raise ConfigError(f"no starbuild repository (dvc.yaml + conf/) at or above {here}; cd into one")


def check_group_overrides(overrides: list[str], conf_dir: Path) -> None:
    """Reject `group=value` overrides whose option file does not exist, in one line."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or "." in key or "/" in key:
            continue
        group_dir = conf_dir / key
        if not group_dir.is_dir() or "," in value or "(" in value or value == "null":
            continue
        if not (group_dir / f"{value}.yaml").is_file():
            options = sorted(p.stem for p in group_dir.glob("*.yaml"))
            raise ConfigError(
                f"unknown value '{value}' for config group '{key}'; choose one of: "
                f"{', '.join(options)} (files in {group_dir})"
            )


def compose(overrides: list[str] | None = None, conf_dir: Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides and resolve every interpolation."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    overrides = list(overrides or [])
    conf_dir = Path(conf_dir or find_repo_root() / "conf").resolve()
    check_group_overrides(overrides, conf_dir)
    schema = register_schema()
    try:
        # version_base=None and to_yaml below match dvc/utils/hydra.py byte for byte.
        with initialize_config_dir(str(conf_dir), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(composition_error(err, conf_dir)) from err
    schema.check_sections(cfg)
    return cfg


def register_schema() -> Any:
    """Put the typed schema (`starbuild_schema`) into Hydra's ConfigStore before composing; return its module."""
    return importlib.import_module(SCHEMA_MODULE)


def composition_error(err: Exception, conf_dir: Path) -> str:
    """One line for a failed composition: what is wrong, the key, and the file or override to fix."""
    # Hydra puts the file ("In 'group/option'") or the override first and OmegaConf's reason after,
    # in the same message or in the cause.
    text = "\n".join(str(e).strip() for e in (err, err.__cause__) if e is not None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    source = re.match(r"In '([^']+)': ", lines[0])
    override = re.search(r"override (?:of )?'?([^'\s]+=[^'\s]*)", lines[0]) or re.search(r"use \+(\S+)", text)
    reason = next((line for line in lines[1:] if not line.startswith(("To append", "full_key", "reference_type",
                                                                      "object_type"))), None)
    message = reason or (lines[0][source.end():] if source else lines[0])
    key = re.search(r"full_key: (\S+)", text)
    if key and key.group(1) not in message:
        message = f"{key.group(1)}: {message}"
    if source:
        where = f"fix conf/{source.group(1)}.yaml"
    elif override:
        where = f"fix the override `{override.group(1)}`"
    else:
        where = f"check the override or the files in {conf_dir}"
    return f"{message} ({where})"


def locate(target: str) -> Any:
    """The object a `_target_` names (`package.module.Name`), imported; ImportError if there is none."""
    module, _, name = target.rpartition(".")
    if not module:
        raise ImportError(f"'{target}' is not a dotted path module.Class")
    return getattr(importlib.import_module(module), name)


def typed_section(cfg: Any, key: str, schema: type[T]) -> T:
    """The section `key` of a composed config as a `schema` instance, its types and values checked.

    A wrong key, type or value raises ConfigError naming `key` and the conf/ group to fix.
    """
    node = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else cfg[key]
    group = key.split(".")[0]
    if node is None:
        raise ConfigError(f"the config has no `{key}` section; add it under conf/{group}/")
    try:
        structured = OmegaConf.structured(schema)
        OmegaConf.set_readonly(structured, False)
        # A plain copy: the node may carry the composition schema's own (same-named) type.
        values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        return OmegaConf.to_object(OmegaConf.merge(structured, values))
    except (OmegaConfBaseException, TypeError, ValueError) as err:
        # Schema checks in __post_init__ start their message with the field's name.
        detail = str(err).strip().splitlines()[0]
        full_key = getattr(err, "full_key", None)
        message = f"{key}.{full_key}: {detail}" if full_key else f"{key}.{detail}"
        raise ConfigError(f"{message}; fix conf/{group}/") from err


def render(cfg: DictConfig) -> str:
    """The text of params.yaml for a composed config."""
    return OmegaConf.to_yaml(cfg)


def main(argv: list[str] | None = None) -> int:
    """`python -m starbuild.core.config [overrides…]`: write (or `--check`) params.yaml."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=small optim.lr=1e-3")
    parser.add_argument("--output", default="params.yaml")
    parser.add_argument("--check", action="store_true", help="fail if the file differs")
    args = parser.parse_args(argv)
    try:
        text = render(compose(args.overrides))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output)
    if args.check:
        if not output.is_file() or output.read_text(encoding="utf-8") != text:
            print(f"error: {output} differs from the composition of conf/; run `make params`",
                  file=sys.stderr)
            return 1
        return 0
    if not output.is_file() or output.read_text(encoding="utf-8") != text:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    # Run as `python -m`, this file is `__main__`, a second copy of the module: other modules raise the
    # ConfigError of `starbuild.core.config`, so its own main must be the one that catches them.
    from starbuild.core.config import main as module_main

    sys.exit(module_main())
