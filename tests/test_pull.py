"""The pull stage: local directory and git origins into raw shards, bad files counted."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig, OmegaConf

from starbuild.core import layout, schemas
from starbuild.core.shards import list_shards
from starbuild.core.stage import StageContext, StageError
from starbuild.swh.stage import SKIP_REASONS, run_pull
from tests.factories import git, make_tree, stage_context, with_overrides

GPL3_HEADER = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n"


def read_raw(root: Path) -> list[dict]:
    shards = list_shards(root / layout.RAW)
    for shard in shards:
        schemas.validate(shard, schemas.RAW)
    return [row for shard in shards for row in pq.read_table(shard).to_pylist()]


@pytest.fixture
def origin_dir(tmp_path: Path) -> Path:
    root = tmp_path / "origins" / "mixed"
    make_tree(root)
    (root / "LICENSE").write_text(GPL3_HEADER + "...")
    (root / "latin1.c").write_bytes("/* caf\xe9 */\n".encode("latin-1"))
    (root / "big.py").write_text("x = 1\n" * 200)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.pyc").write_bytes(b"junk")
    return root


def test_pull_directory_origin_counts_and_hashes(make_context: Callable[..., StageContext],
                                                 smoke_cfg: DictConfig, origin_dir: Path) -> None:
    cfg = with_overrides(smoke_cfg, source={"max_file_bytes": 1000,
                                            "origins": [{"name": "local/mixed", "path": str(origin_dir)}]})
    ctx = make_context("pull", cfg)
    run_pull(ctx)
    rows = read_raw(ctx.root)
    paths = [r["path"] for r in rows]
    assert paths == sorted(paths) == ["LICENSE", "empty.txt", "latin1.c", "pkg-a.txt", "pkg/mod.py", "run.sh"]
    metrics = json.loads((ctx.root / "metrics/pull.json").read_text())
    assert set(metrics["skipped"]) >= set(SKIP_REASONS)
    assert {k: n for k, n in metrics["skipped"].items() if n} == {"binary": 1, "too_large": 1, "symlink": 1}
    latin1 = next(r for r in rows if r["path"] == "latin1.c")
    assert latin1["content"] == "/* café */\n" and latin1["src_encoding"] != "UTF-8"
    assert latin1["length_bytes"] == len(latin1["content"].encode("utf-8"))
    assert latin1["blob_id"] == hashlib.sha1((origin_dir / "latin1.c").read_bytes()).hexdigest()
    run_sh = next(r for r in rows if r["path"] == "run.sh")
    assert run_sh["is_executable"] and run_sh["language"] == "Shell"
    assert run_sh["content_id"] == git(origin_dir, "hash-object", "run.sh")
    assert run_sh["swhid"] == f"swh:1:cnt:{run_sh['content_id']}"
    assert all(r["license_type"] == "non_permissive" and r["detected_licenses"] == ["GPL-3.0-only"] for r in rows)
    origin = metrics["origins"]["local/mixed"]
    assert origin["directory_swhid"] == f"swh:1:dir:{rows[0]['directory_id']}"
    # The directory id covers skipped files too, but never the excluded __pycache__.
    shutil.rmtree(origin_dir / "__pycache__")
    git(origin_dir, "init", "-q")
    git(origin_dir, "add", "-A")
    assert rows[0]["directory_id"] == git(origin_dir, "write-tree")


def test_pull_git_origin_reads_head_commit(make_context: Callable[..., StageContext],
                                          smoke_cfg: DictConfig, tmp_path: Path) -> None:
    repo = tmp_path / "gitrepo"
    make_tree(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (repo / "uncommitted.py").write_text("not pulled\n")
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": [
        {"name": "git/repo", "path": str(repo), "license": "MIT"}]}))
    run_pull(ctx)
    rows = read_raw(ctx.root)
    assert [r["path"] for r in rows] == ["empty.txt", "pkg-a.txt", "pkg/mod.py", "run.sh"]
    assert {r["revision_id"] for r in rows} == {git(repo, "rev-parse", "HEAD")}
    assert {r["directory_id"] for r in rows} == {git(repo, "rev-parse", "HEAD^{tree}")}
    assert {r["license_type"] for r in rows} == {"permissive"}
    assert all(r["revision_date"] is not None for r in rows)


def test_shards_are_cut_by_bytes_and_deterministic(make_context: Callable[..., StageContext],
                                                   smoke_cfg: DictConfig, origin_dir: Path,
                                                   tmp_path: Path) -> None:
    cfg = with_overrides(smoke_cfg, source={"shard_target_bytes": 60, "origins": [
        {"name": "b", "path": str(origin_dir)}, {"name": "a", "path": str(origin_dir)}]})
    first = stage_context("pull", cfg, tmp_path / "one")
    second = stage_context("pull", cfg, tmp_path / "two")
    run_pull(first)
    run_pull(second)
    shards = list_shards(first.root / layout.RAW)
    assert len(shards) > 2
    assert [s.read_bytes() for s in shards] == [s.read_bytes() for s in list_shards(second.root / layout.RAW)]
    rows = read_raw(first.root)
    assert [(r["repo_name"], r["path"]) for r in rows] == sorted((r["repo_name"], r["path"]) for r in rows)


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        ([{"name": "x", "path": "/no/such/dir"}], r"fix source\.origins\[0\]"),
        ([{"name": "x", "distribution": "no-such-dist", "subdir": "x"}], "is not installed"),
        ([{"path": "/tmp"}], "has no name"),
        ([{"name": "x", "path": "/tmp"}, {"name": "x", "path": "/tmp"}], "repeated: x"),
    ],
)
def test_bad_origins_fail_with_one_clear_line(make_context: Callable[..., StageContext],
                                              smoke_cfg: DictConfig, origins: list, message: str) -> None:
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": origins}))
    with pytest.raises(StageError, match=message):
        run_pull(ctx)
    assert not (ctx.root / layout.RAW).exists()


# Run as an unprivileged user by the test below: pull one origin, report the StageError it raised.
PULL_AS_CHILD = """
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.swh.stage import SKIP_REASONS, run_pull
work = Path(sys.argv[1])
ctx = StageContext("pull", OmegaConf.load(work / "cfg.yaml"), work / "out", work / "out")
try:
    run_pull(ctx)
    error = None
except StageError as err:
    error = str(err)
print(json.dumps({"error": error, "raw_written": (ctx.root / layout.RAW).exists()}))
"""


def unprivileged_prefix(user: pwd.struct_passwd) -> list[str] | None:
    """A command prefix that runs what follows as `user`, with no supplementary groups; None if none exists."""
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--"]
    return None


def test_names_that_are_not_utf8_are_counted_and_still_hashed(make_context: Callable[..., StageContext],
                                                               smoke_cfg: DictConfig, tmp_path: Path) -> None:
    root = tmp_path / "names"
    root.mkdir()
    (root / os.fsdecode(b"caf\xe9.py")).write_text("x = 1\n")  # latin-1 bytes in a name
    (root / "new\nline.py").write_text("y = 2\n")
    (root / "ok.py").write_text("z = 3\n")
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": [{"name": "local/names",
                                                                             "path": str(root)}]}))
    run_pull(ctx)
    rows = read_raw(ctx.root)
    assert [r["path"] for r in rows] == ["new\nline.py", "ok.py"]
    assert json.loads((ctx.root / "metrics/pull.json").read_text())["skipped"]["undecodable_path"] == 1
    # The skipped file is still part of the directory, byte for byte, as in git.
    git(root, "init", "-q")
    git(root, "add", "-A")
    assert rows[0]["directory_id"] == git(root, "write-tree")


@pytest.mark.parametrize("name", ["LICENSE-MIT", "LICENSE.MIT", "MIT-LICENSE", "license.txt", "COPYING"])
def test_license_files_are_found_by_the_stack_v2_name_rule(make_context: Callable[..., StageContext],
                                                           smoke_cfg: DictConfig, tmp_path: Path, name: str) -> None:
    root = tmp_path / "licensed"
    root.mkdir()
    (root / name).write_text("MIT License\n\nPermission is hereby granted, free of charge, to any person …\n")
    (root / "main.py").write_text("print('hi')\n")
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": [{"name": "local/licensed",
                                                                             "path": str(root)}]}))
    run_pull(ctx)
    rows = read_raw(ctx.root)
    assert {(r["license_type"], tuple(r["detected_licenses"])) for r in rows} == {("permissive", ("MIT",))}


def test_unreadable_origin_is_named(make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
                                    tmp_path: Path) -> None:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": [
                {"name": "x", "path": str(locked)}]}))
            with pytest.raises(StageError, match="not readable"):
                run_pull(ctx)
        finally:
            locked.chmod(0o755)
        return
    # Root reads any directory: run the pull in a child process as `nobody`, which cannot.
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no `nobody` user to run the pull as")
    prefix = unprivileged_prefix(nobody)
    if prefix is None:
        pytest.skip("running as root, and neither setpriv nor runuser is installed to drop privileges")
    # tmp_path sits in a root-only directory: the child's workspace is a fresh one it owns.
    work = Path(tempfile.mkdtemp(prefix="starbuild-unreadable-"))
    locked = work / "locked"
    try:
        locked.mkdir()
        locked.chmod(0)  # owned by root: no access for nobody
        cfg = with_overrides(smoke_cfg, source={"origins": [{"name": "x", "path": str(locked)}]})
        OmegaConf.save(cfg, work / "cfg.yaml")
        os.chown(work, nobody.pw_uid, nobody.pw_gid)
        os.chown(work / "cfg.yaml", nobody.pw_uid, nobody.pw_gid)
        src = Path(__file__).resolve().parents[1] / "src"
        env = {**os.environ, "HOME": str(work), "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
        child = subprocess.run([*prefix, sys.executable, "-c", PULL_AS_CHILD, str(work)], cwd=work, env=env,
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == 0, f"the pull as nobody crashed:\n{child.stdout[-2000:]}\n{child.stderr[-3000:]}"
        result = json.loads(child.stdout.strip().splitlines()[-1])
        assert result["error"] is not None, "pulling an unreadable origin as nobody raised no StageError"
        assert "not readable" in result["error"] and str(locked) in result["error"], result["error"]
        assert not result["raw_written"]
    finally:
        locked.chmod(0o755)
        shutil.rmtree(work)


def test_default_corpus_is_big_varied_and_licensed(make_context: Callable[..., StageContext]) -> None:
    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    ctx = make_context("pull", compose([], conf_dir=REPO_ROOT / "conf"))
    run_pull(ctx)
    metrics = json.loads((ctx.root / "metrics/pull.json").read_text())
    assert metrics["bytes"] >= 10_000_000
    programming = {"Python", "C", "C++", "Cython", "Fortran", "Fortran Free Form", "JavaScript"}
    assert len(programming & set(metrics["languages"])) >= 4
    assert metrics["files_by_license_type"]["permissive"] > 0
    assert metrics["files_by_license_type"]["non_permissive"] > 0


def test_origin_failing_in_a_worker_is_one_line_naming_it(make_context: Callable[..., StageContext],
                                                         smoke_cfg: DictConfig, tmp_path: Path,
                                                         origin_dir: Path) -> None:
    repo = tmp_path / "git_repo"
    make_tree(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    origins = [{"name": "local/mixed", "path": str(origin_dir)},
               {"name": "git/repo", "path": str(repo), "branch": "no-such-branch"}]
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": origins}))
    with pytest.raises(StageError, match=r"^origins: git/repo failed: OriginError: .*choose one of: "
                                         r"refs/heads/main$") as caught:
        run_pull(ctx)
    assert "\n" not in str(caught.value)
    assert not (ctx.root / layout.RAW).exists()


def test_opted_out_origins_are_never_pulled_and_are_listed(make_context: Callable[..., StageContext],
                                                           smoke_cfg: DictConfig, tmp_path: Path) -> None:
    origins = []
    for name in ("alice/kept", "bob/one", "bob/two", "carol/gone", "carol/stays"):
        root = tmp_path / "origins" / name
        root.mkdir(parents=True)
        (root / "main.py").write_text(f"print({name!r})\n")
        origins.append({"name": name, "path": str(root)})
    opt_out = tmp_path / "opt_out.txt"
    opt_out.write_text("# opted out\nBob\ncarol/gone  # one repository\n\n")
    ctx = make_context("pull", with_overrides(smoke_cfg, source={"origins": origins, "opt_out": str(opt_out)}))
    run_pull(ctx)
    assert sorted({r["repo_name"] for r in read_raw(ctx.root)}) == ["alice/kept", "carol/stays"]
    metrics = json.loads((ctx.root / "metrics/pull.json").read_text())
    assert metrics["opted_out"] == ["bob/one", "bob/two", "carol/gone"]
    assert sorted(metrics["origins"]) == ["alice/kept", "carol/stays"]


def test_a_missing_opt_out_list_fails_with_the_fix(make_context: Callable[..., StageContext],
                                                    smoke_cfg: DictConfig, origin_dir: Path) -> None:
    ctx = make_context("pull", with_overrides(smoke_cfg, source={
        "origins": [{"name": "local/mixed", "path": str(origin_dir)}], "opt_out": "conf/source/nothing.txt"}))
    with pytest.raises(StageError, match=r"^the opt-out list conf/source/nothing.txt does not exist; create it"):
        run_pull(ctx)


def test_the_pull_stage_depends_on_its_opt_out_list() -> None:
    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    opt_out = Path(compose([], conf_dir=REPO_ROOT / "conf").source.opt_out)
    assert opt_out in layout.declared_paths(layout.dag_stages(REPO_ROOT)["pull"], "deps")
