"""Compose `conf/` with Hydra exactly as `dvc exp run` does, and write `params.yaml`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_NAME = "config"


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
    try:
        # version_base=None and to_yaml below match dvc/utils/hydra.py byte for byte.
        with initialize_config_dir(str(conf_dir), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides)
    except HydraException as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(f"{first_line} (check the override or the files in {conf_dir})") from err
    OmegaConf.resolve(cfg)
    return cfg


def render(cfg: DictConfig) -> str:
    """The text of params.yaml for a composed config."""
    return OmegaConf.to_yaml(cfg)


def main(argv: list[str] | None = None) -> int:
    """`python -m starbuild.core.config [overrides…]`: write (or `--check`) params.yaml."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=small train.lr=1e-3")
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
    sys.exit(main())
