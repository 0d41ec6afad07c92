"""The shared entry point of every `stages/<name>.py`: a Hydra app with DVC-safe outputs.

Two ways to run a stage:

* Under DVC (`dvc.yaml` passes `--config-name=params`): the config is the composed
  `params.yaml`, so `dvc exp run -S ...` reaches the stage; outputs go to the repository paths
  that dvc.yaml declares, and Hydra writes no output directory or log file of its own.
* By hand (`python stages/train.py -m train.lr=1e-3,3e-3`): Hydra composes `conf/` with the
  overrides; inputs are still read from the repository, but outputs go to the job's own Hydra
  output directory (`outputs/…` or `multirun/…/<job>`), never into DVC's outs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.config import ConfigError, check_group_overrides, find_repo_root, register_schema, typed_section
from starbuild.core.schemas import SchemaMismatch, validate
from starbuild.core.shards import atomic_file, list_shards

PARAMS_MODE_FLAG = "--config-name=params"
# What keeps Hydra from writing outputs/<date>/ or logs when DVC runs the stage.
PARAMS_MODE_OVERRIDES = [
    "hydra.run.dir=.",
    "hydra.output_subdir=null",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
]

log = logging.getLogger("starbuild")

T = TypeVar("T")


class StageError(RuntimeError):
    """A stage cannot run (missing input, bad configuration); the message names the fix."""


@dataclass(frozen=True)
class StageContext:
    """What a stage's logic needs: its config and where to read and write."""

    name: str
    cfg: DictConfig
    root: Path
    out_root: Path

    def _command_making(self, rel: Path) -> str:
        producer = layout.producer_of(rel, self.root)
        return f"`dvc repro {producer}`" if producer else "`dvc repro`"

    def input(self, rel: Path) -> Path:
        """An input path under the repository; fail clearly if the producing stage has not run."""
        path = self.root / rel
        if not path.exists():
            raise StageError(f"{rel} does not exist; run {self._command_making(rel)} first (or `make repro`)")
        return path

    def input_shards(self, rel: Path, schema: pa.Schema) -> list[Path]:
        """The shards of an input table, each validated against `schema`; fail clearly if there are none.

        A shard that is not readable Parquet (truncated, overwritten) fails here, in one line naming
        it, before any work starts.
        """
        shards = list_shards(self.input(rel))
        if not shards:
            raise StageError(f"{rel} has no shards; run {self._command_making(rel)} first")
        for shard in shards:
            with self.reading(shard.relative_to(self.root)):
                validate(shard, schema)
        return shards

    @contextlib.contextmanager
    def reading(self, rel: Path) -> Iterator[Path]:
        """Read the input `rel` inside this block: any failure to read it (truncated, overwritten) becomes
        one line naming it and the fix. Keep only the reading in the block."""
        path = self.input(rel)
        try:
            yield path
        except (StageError, SchemaMismatch):
            raise
        except Exception as err:  # whatever the reader raises: a damaged input is named, not a traceback
            raise self._unreadable(rel, err) from err

    def _unreadable(self, rel: Path, err: Exception) -> StageError:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
        found = layout.producing_out(rel, self.root)
        if found is None:
            fix = "restore or rebuild it"
        else:
            # An out DVC does not cache (metrics) is kept by git.
            restore = f"dvc checkout {found.out}" if found.cached else f"git checkout -- {found.out}"
            fix = f"restore it with `{restore}` or rebuild it with `dvc repro -f -s {found.stage}`"
        return StageError(f"{rel} is not readable ({reason}); {fix}")

    def section(self, key: str, schema: type[T]) -> T:
        """The config section `key` as a checked `schema` instance; a bad key or value is a StageError naming it."""
        try:
            return typed_section(self.cfg, key, schema)
        except ConfigError as err:
            raise StageError(str(err)) from err

    def output(self, rel: Path) -> Path:
        """Where this run writes `rel`."""
        return self.out_root / rel

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write this stage's metrics JSON atomically, with sorted keys for stable bytes."""
        path = self.output(layout.metrics_file(self.name))
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        log.info("metrics -> %s", path)
        return path


def _prepare_argv(root: Path, name: str) -> bool:
    """Adjust sys.argv for the DVC mode; return whether the stage runs against params.yaml."""
    args = sys.argv[1:]
    pairs = {"=".join(args[i : i + 2]) for i in range(len(args) - 1)}
    params_mode = PARAMS_MODE_FLAG in args or PARAMS_MODE_FLAG in pairs
    if params_mode:
        sys.argv[1:] = [f"--config-dir={root}", *args, *PARAMS_MODE_OVERRIDES]
    else:
        overrides = [a for a in args if not a.startswith("-") and "=" in a]
        check_group_overrides(overrides, root / "conf")
        # By hand, conf/ is composed: its typed schema must be registered first. Every stage script
        # is one Hydra app, so the job (and its outputs/<job>/ and multirun/<job>/) is named here.
        register_schema()
        sys.argv[1:] = [*args, f"hydra.job.name={name}"]
    return params_mode


def stage_app(name: str, run: Callable[[StageContext], None]) -> None:
    """Run `run` as the Hydra app of stage `name`; print one-line errors, exit non-zero."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    try:
        root = find_repo_root()
        params_mode = _prepare_argv(root, name)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(config_path=str(root / "conf"), config_name="config", version_base=None)
    def _main(cfg: DictConfig) -> None:
        if params_mode:
            logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
            out_root = root
        else:
            out_root = Path(HydraConfig.get().runtime.output_dir)
        context = StageContext(name=name, cfg=cfg, root=root, out_root=out_root)
        log.info("stage %s: reading %s, writing under %s", name, root, out_root)
        try:
            run(context)
        except (StageError, ConfigError, SchemaMismatch) as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            sys.exit(2)

    _main()
