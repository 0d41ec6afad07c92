"""Build small, valid tables for unit tests."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from starbuild.core import layout, schemas
from starbuild.core.shards import list_shards, read_shard, shard_name, write_shard
from starbuild.core.stage import StageContext


def with_overrides(cfg: DictConfig, **sections: dict[str, Any]) -> DictConfig:
    """A copy of `cfg` with some keys of some sections replaced, e.g. executor={"workers": 1}."""
    return OmegaConf.merge(cfg, sections)


# Project files stages read from the repository root besides their data: the DAG (error messages name
# producing stages from it), the opt-out list the pull reads and the extensions the filter excludes.
PROJECT_FILES = (layout.DVC_YAML, "conf/source/opt_out.txt", "conf/filter/excluded_extensions.tsv", "corpus/notebooks",
                 "corpus/gharchive")


def stage_context(name: str, cfg: DictConfig, root: Path, out_root: Path | None = None) -> StageContext:
    """A StageContext under `root`, which gets the project's PROJECT_FILES."""
    for rel in PROJECT_FILES:
        source = Path(__file__).resolve().parents[1] / rel
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, root / rel, dirs_exist_ok=True)
        else:
            shutil.copy(source, root / rel)
    return StageContext(name=name, cfg=cfg, root=root, out_root=out_root or root)


def copy_sources(dest: Path, skip: tuple[str, ...], root: Path | None = None) -> Path:
    """Copy the project's files (git-tracked, or untracked and not ignored) into `dest`, except `skip` prefixes."""
    root = root or Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        source = root / rel
        if rel.startswith(skip) or not source.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def raw_row(repo_name: str, path: str, content: str, **overrides: Any) -> dict[str, Any]:
    """One row of the raw file table with honest hashes for `content`."""
    data = content.encode("utf-8")
    sha1_git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    row = {
        "blob_id": hashlib.sha1(data).hexdigest(),
        "content_id": sha1_git,
        "swhid": f"swh:1:cnt:{sha1_git}",
        "repo_name": repo_name,
        "path": path,
        "directory_id": "0" * 40,
        "snapshot_id": None,
        "revision_id": None,
        "branch_name": None,
        "visit_date": None,
        "revision_date": None,
        "committer_date": None,
        "star_events_count": None,
        "fork_events_count": None,
        "language": "Python",
        "is_vendor": False,
        "is_generated": False,
        "license_type": "permissive",
        "detected_licenses": ["MIT"],
        "src_encoding": "UTF-8",
        "length_bytes": len(data),
        "is_executable": False,
        "content": content,
    }
    row.update(overrides)
    return row


def write_table(table_dir: Path, shards: list[list[dict[str, Any]]], schema: pa.Schema = schemas.RAW) -> Path:
    """Write each list of rows as one shard `part-NNNNN.parquet` of the table `table_dir`."""
    table_dir.mkdir(parents=True, exist_ok=True)
    for index, rows in enumerate(shards):
        write_shard(raw_table(rows, schema), table_dir / shard_name(index))
    return table_dir


def table_rows(table_dir: Path) -> list[dict[str, Any]]:
    """Every row of a table's shards, in shard order."""
    return [row for shard in list_shards(table_dir) for row in read_shard(shard).to_pylist()]


def stage_metrics(ctx: StageContext) -> dict[str, Any]:
    """The metrics file the stage of `ctx` wrote."""
    return json.loads((ctx.root / layout.metrics_file(ctx.name)).read_text(encoding="utf-8"))


def file_bytes(root: Path, *paths: Path) -> dict[str, bytes]:
    """The bytes of every file at or under `paths` (relative to `root`), for byte-identity checks."""
    found: dict[str, bytes] = {}
    for rel in paths:
        target = root / rel
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        found.update({str(p.relative_to(root)): p.read_bytes() for p in files})
    return found


def doc_row(repo_name: str, split: str, text: str | None, n_files: int = 1) -> dict[str, Any]:
    """One row of the document table (schemas.DOCS): a code document's first copy."""
    size = len(text.encode("utf-8")) if text is not None else 0
    return {"repo_name": repo_name, "split": split, "n_files": n_files, "length_bytes": size, "text": text,
            "source": "code", "epoch": 0, "language": None}


def code_only(cfg: DictConfig, epochs: float = 1.0) -> DictConfig:
    """A copy of `cfg` whose training mixture is code alone, `epochs` times (data/notebooks, data/issues unread)."""
    result = copy.deepcopy(cfg)
    for source in result.mixture.sources.values():
        # Epochs 0 leave a source out: its table is not read.
        source.epochs = epochs if source.table == str(layout.CLEAN) else 0.0
    return result


def raw_table(rows: list[dict[str, Any]], schema: pa.Schema = schemas.RAW) -> pa.Table:
    """A table of `rows` with exactly `schema`'s columns."""
    return pa.Table.from_pylist(rows, schema=schema)


def git(cwd: Path, *args: str, data: bytes | None = None, env: dict[str, str] | None = None) -> str:
    """Run git in `cwd` with a fixed identity (plus `env`); return its stripped stdout."""
    full_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", **(env or {})}
    return subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=True,
                          env=full_env).stdout.decode().strip()


def make_tree(root: Path) -> None:
    """A tree with the cases git sorts or types specially."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg-a.txt").write_text("sorts before the directory pkg\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty.txt").write_bytes(b"")
    (root / "link").symlink_to("pkg/mod.py")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "data.bin").write_bytes(b"\0\1\2")


def with_section(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    """A copy of `cfg` with the node at dotted `key` replaced whole (not merged), e.g. a reordered mapping."""
    result = copy.deepcopy(cfg)
    OmegaConf.update(result, key, value, merge=False)
    return result
