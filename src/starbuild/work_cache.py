"""A content-addressed cache of finished shard tasks, so a stage killed part-way reruns only what is missing.

A task's entry is keyed by the stage's fingerprint (its code deps' bytes and its declared params, as
dvc.yaml lists them; the executor excluded, since it never changes the bytes) and the task's own key:
the SHA-256 of its input shard or shards (and of anything else its output depends on), or for pull an
origin's identity (a git commit, a directory's file sizes and times). The entry holds the task's output
files and its result, written by the worker that ran it, atomically. On a rerun every task whose entry
exists is copied back instead of run, so the outputs are byte-identical. The cache lives outside
DVC's outs, in `.cache/starbuild/work/` (or `$STARBUILD_WORK_CACHE`; `off` disables it); a stage that
finishes removes its own entries, so only interrupted runs leave any. `python -m starbuild.work_cache`
prints its size, `--prune` (`make prune-work-cache`) empties it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

import starbuild
from starbuild.core import layout

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_ROOT = Path(".cache/starbuild/work")
ENV = "STARBUILD_WORK_CACHE"
OUTPUT = "output"
RESULT = "result.pickle"
# Params that choose where work runs, never what it writes.
NOT_OUTPUT_PARAMS = ("executor",)
CODE_ROOTS = ("src/", "stages/")
DATA_ROOTS = ("data/", "models/")


def cache_root(root: Path) -> Path | None:
    """Where the work cache lives for the repository `root`; None when `$STARBUILD_WORK_CACHE=off`."""
    setting = os.environ.get(ENV)
    if setting == "off":
        return None
    return Path(setting) if setting else Path(root) / DEFAULT_ROOT


def _hash_file(path: Path, digest: Any) -> None:
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    _hash_file(path, digest)
    return digest.hexdigest()


def stage_fingerprint(stage: str, cfg: Any) -> str:
    """SHA-256 over the stage's code deps (files under src/ and stages/ in dvc.yaml) and declared params."""
    package = Path(starbuild.__file__).resolve().parent
    repo = package.parents[1]
    if (repo / layout.DVC_YAML).is_file():
        spec = layout.dag_stages(repo)[stage]
    else:  # an installed package: all of its code, and every section but the executor
        spec = {"deps": [package.relative_to(repo)], "params": [key for key in cfg if key not in NOT_OUTPUT_PARAMS]}
    digest = hashlib.sha256(stage.encode())
    for dep in sorted(str(path) for path in layout.declared_paths(spec, "deps")):
        target = repo / dep
        is_code = dep.startswith(CODE_ROOTS) or target.is_relative_to(package)
        # Files such as requirements.lock (library versions) count too; data deps are the tasks' own keys.
        if not is_code and not (target.is_file() and not dep.startswith(DATA_ROOTS)):
            continue
        files = sorted(p for p in target.rglob("*.py") if "__pycache__" not in p.parts) if target.is_dir() else [target]
        for file in files:
            digest.update(str(file.relative_to(repo)).encode())
            _hash_file(file, digest)
    params = {}
    for key in spec.get("params", []):
        if key not in NOT_OUTPUT_PARAMS:
            node = OmegaConf.select(cfg, key)
            params[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# A task's output: one file, or several (a task over a group of shards).
Outputs = Path | Sequence[Path]


def _files(output: Outputs) -> list[Path]:
    return [Path(output)] if isinstance(output, str | os.PathLike) else [Path(file) for file in output]


def _entry_file(entry: Path, index: int) -> Path:
    """Where an entry keeps its task's output file `index` (a single output is OUTPUT)."""
    return entry / (OUTPUT if index == 0 else f"{OUTPUT}-{index}")


@dataclass(frozen=True)
class _Stored:
    """Picklable worker side: run the task, then keep its output files and result under its entry."""

    fn: Callable[[Any], Any]

    def __call__(self, item: tuple[Any, Outputs, Path | None]) -> Any:
        task, output, entry = item
        result = self.fn(task)
        if entry is None:
            return result
        # Per process and thread: two tasks with the same bytes may store the same entry at once.
        staging = entry.with_name(f".tmp-{entry.name}-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for index, file in enumerate(_files(output)):
            shutil.copyfile(file, _entry_file(staging, index))
        (staging / RESULT).write_bytes(pickle.dumps(result))
        try:
            os.replace(staging, entry)
        except OSError:  # a shard with the same bytes stored it first: the same output and result
            shutil.rmtree(staging, ignore_errors=True)
        return result


@dataclass(frozen=True)
class WorkCache:
    """The entries of one stage run: `directory` = <cache root>/<stage>/<fingerprint>."""

    directory: Path | None

    @classmethod
    def for_stage(cls, stage: str, root: Path, cfg: Any) -> WorkCache:
        """The cache of `stage` under its current code and params (disabled when the cache is off)."""
        base = cache_root(root)
        return cls(None if base is None else base / stage / stage_fingerprint(stage, cfg)[:24])

    def keys(self, inputs: Sequence[Path], extra: Sequence[bytes] | None = None) -> list[str]:
        """A key per task from the SHA-256 of its input file and its `extra` bytes (whatever else its output
        depends on); nothing is hashed when the cache is off."""
        if self.directory is None:
            return []
        keys = [file_sha256(path) for path in inputs]
        if extra is not None:
            keys = [hashlib.sha256(key.encode() + more).hexdigest() for key, more in zip(keys, extra, strict=True)]
        return keys

    def group_keys(self, groups: Sequence[Sequence[Path]]) -> list[str]:
        """A key per task over a group of input files: a lone file's own key, else the SHA-256 of the files'
        keys in order; nothing is hashed when the cache is off."""
        if self.directory is None:
            return []
        keys = iter(self.keys([path for group in groups for path in group]))
        grouped = [[next(keys) for _ in group] for group in groups]
        return [own[0] if len(own) == 1 else hashlib.sha256("".join(own).encode()).hexdigest() for own in grouped]

    def map(self, executor: Any, fn: Callable[[T], R], tasks: Sequence[T], keys: Sequence[str | None],
            outputs: Sequence[Outputs], desc: str, labels: Sequence[str], in_threads: bool = False) -> list[R]:
        """`executor.map(fn, tasks)`, except that a task whose key has an entry (done by an interrupted run) has
        its output files copied back and its result reused instead of running; a None key is never cached."""
        if self.directory is None:
            return executor.map(fn, tasks, desc=desc, labels=labels, in_threads=in_threads)
        self.directory.mkdir(parents=True, exist_ok=True)
        entries = [None if key is None else self.directory / key for key in keys]
        results: dict[int, R] = {}
        for index, entry in enumerate(entries):
            if entry is not None and (entry / RESULT).is_file():
                for number, file in enumerate(_files(outputs[index])):
                    shutil.copyfile(_entry_file(entry, number), file)
                results[index] = pickle.loads((entry / RESULT).read_bytes())
        missing = [i for i in range(len(tasks)) if i not in results]
        if results:
            log.info("%s: %d of %d tasks reused from the work cache %s (an interrupted run's)", desc, len(results),
                     len(tasks), self.directory)
        done = executor.map(_Stored(fn), [(tasks[i], outputs[i], entries[i]) for i in missing], desc=desc,
                            labels=[labels[i] for i in missing], in_threads=in_threads)
        results.update(zip(missing, done, strict=True))
        return [results[i] for i in range(len(tasks))]

    def finish(self) -> None:
        """The stage succeeded and DVC holds its outputs: drop this run's entries, report what remains."""
        if self.directory is None:
            return
        shutil.rmtree(self.directory, ignore_errors=True)
        base = self.directory.parents[1]
        for folder in (self.directory.parent, base):
            with contextlib.suppress(OSError):  # only when empty
                folder.rmdir()
        entries, size = usage(base)
        if entries:
            log.info("work cache %s: %d entries of interrupted runs, %.1f MB (`make prune-work-cache` empties it)",
                     base, entries, size / 1e6)


def usage(base: Path) -> tuple[int, int]:
    """(entries, bytes) held under a work cache root; safe while a running stage adds entries."""
    entries = size = 0
    # os.walk skips a directory that vanishes under it (a worker renaming its staging directory).
    for folder, subfolders, files in os.walk(base):
        if len(Path(folder).relative_to(base).parts) == 2:  # <stage>/<fingerprint>/: its entries
            entries += sum(not name.startswith(".tmp-") for name in subfolders)
        for name in files:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(folder, name)).st_size
    return entries, size


def main(argv: list[str] | None = None) -> int:
    """`python -m starbuild.work_cache [--prune]`: print the work cache's size, or empty it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--prune", action="store_true", help="remove every entry")
    args = parser.parse_args(argv)
    base = cache_root(Path.cwd())
    if base is None:
        print(f"the work cache is off (${ENV}=off)")
        return 0
    entries, size = usage(base)
    print(f"work cache {base}: {entries} entries, {size / 1e6:.1f} MB")
    if args.prune and base.exists():
        shutil.rmtree(base)
        print(f"removed {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
