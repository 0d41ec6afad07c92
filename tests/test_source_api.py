"""The swh_api source against a loopback fake of the SWH Web API built from a git repository, with faults."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pyarrow.parquet as pq
import pytest
from dulwich.repo import Repo
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.shards import list_shards
from starbuild.swh.api import ApiClient, ApiSource, default_branch, repo_name
from starbuild.swh.hashing import snapshot_id
from starbuild.swh.origins import git_branches
from starbuild.swh.source import OriginRef, SourceConfig
from starbuild.swh.stage import run_pull
from tests.factories import git, stage_context, with_overrides

ORIGIN = "https://github.com/octo/demo"
ABSENT = "https://gitlab.com/nobody/absent"
TOKEN = "tok-9f8e7d6c5b4a-never-written"
MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy …\n"
GPL3_HEADER = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n"
TIMEOUT = 0.5
MAX_FILE_BYTES = 2000
MISSING_PATH = "src/pkg/util.py"  # its content answers 404


def make_repo(root: Path) -> Path:
    """A git repository with nested dirs, an executable, a symlink, a submodule, two licenses and odd files."""
    (root / "src" / "pkg" / "deep").mkdir(parents=True)
    (root / "gpl").mkdir()
    (root / "LICENSE").write_text(MIT)
    (root / "README.md").write_text("# demo\n")
    (root / "src" / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (root / MISSING_PATH).write_text("def g():\n    return 2\n")
    (root / "src" / "pkg" / "deep" / "x.py").write_text("X = 'deep'\n")
    (root / "gpl" / "COPYING").write_text(GPL3_HEADER + "...")
    (root / "gpl" / "lib.c").write_text("int lib(void) { return 0; }\n")
    (root / "latin1.c").write_bytes("/* caf\xe9 cr\xe8me */\n".encode("latin-1"))
    (root / "data.bin").write_bytes(b"\0\1\2\3")
    (root / "big.txt").write_text("y" * (MAX_FILE_BYTES + 10))
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("README.md")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    # A submodule as SWH sees it: a gitlink entry (`rev`), whose commit is not in this repository.
    git(root, "update-index", "--add", "--cacheinfo", f"160000,{'ab' * 20},vendor/sub")
    git(root, "commit", "-qm", "first", "--date", "2021-03-04T05:06:07+02:00")
    for branch in ("dev", "feature-x"):
        git(root, "branch", branch)
    git(root, "tag", "-a", "v1", "-m", "release one")
    return root


def iso(seconds: int, offset: int) -> str:
    """A git time and offset as the API writes dates (ISO 8601 with the original offset)."""
    return datetime.fromtimestamp(seconds, tz=timezone(timedelta(seconds=offset))).isoformat()


@dataclass
class Request:
    at: float
    key: str
    authorization: str | None


@dataclass
class FakeArchive:
    """What the fake API answers, built from a repository with dulwich, plus faults to inject."""

    origin: str
    snapshot: str
    branches: dict[str, dict[str, str]]
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    directories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    # route key → faults to answer with, one per request, in order; then the route answers normally.
    faults: dict[str, list[str]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # content ids answering 404
    contents_down: bool = False  # every content request answers 500
    requests: list[Request] = field(default_factory=list)
    rate_limit_reset: int = 0
    base: str = ""

    def keys(self, prefix: str) -> list[Request]:
        """The requests whose route key starts with `prefix`, in arrival order."""
        return [r for r in self.requests if r.key.startswith(prefix)]


def build_archive(repo_path: Path) -> FakeArchive:
    repo = Repo(str(repo_path))
    branches = git_branches(repo)
    archive = FakeArchive(ORIGIN, snapshot_id(branches).hex(), {
        name.decode(): {"target": b.target.decode() if b.target_type == "alias" else b.target.hex(),
                        "target_type": b.target_type}
        for name, b in branches.items()
    })
    for sha in repo.object_store:
        obj = repo[sha]
        if obj.type_name == b"commit":
            archive.revisions[sha.decode()] = {
                "id": sha.decode(), "directory": obj.tree.decode(), "parents": [],
                "date": iso(obj.author_time, obj.author_timezone),
                "committer_date": iso(obj.commit_time, obj.commit_timezone), "type": "git"}
        elif obj.type_name == b"tag":
            archive.releases[sha.decode()] = {"id": sha.decode(), "target": obj.object[1].decode(),
                                              "target_type": "revision"}
        elif obj.type_name == b"tree":
            archive.directories[sha.decode()] = [directory_entry(repo, sha, item) for item in obj.iteritems()]
        elif obj.type_name == b"blob":
            archive.contents[sha.decode()] = obj.data
    return archive


def directory_entry(repo: Repo, parent: bytes, item: Any) -> dict[str, Any]:
    """One entry of `/directory/<id>/` as the API lists it."""
    target = item.sha.decode()
    entry = {"dir_id": parent.decode(), "name": item.path.decode(), "perms": item.mode, "target": target}
    if stat.S_ISDIR(item.mode):
        return {**entry, "type": "dir"}
    if item.mode == 0o160000:
        return {**entry, "type": "rev"}
    data = repo[item.sha].data
    checksums = {"sha1": hashlib.sha1(data).hexdigest(), "sha1_git": target,
                 "sha256": hashlib.sha256(data).hexdigest()}
    return {**entry, "type": "file", "length": len(data), "checksums": checksums}


class Handler(BaseHTTPRequestHandler):
    """Routes `/api/1/…` to the server's FakeArchive; faults first."""

    server: FakeServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        archive = self.server.archive
        key, status, body, headers = route(archive, self.path)
        archive.requests.append(Request(time.time(), key, self.headers.get("Authorization")))
        queued = archive.faults.get(key) or []
        fault = queued.pop(0) if queued else None
        if fault == "sleep":  # longer than the client's timeout: it gives up and retries
            time.sleep(TIMEOUT * 2)
        elif fault == "429":
            status, body, headers = 429, b'{"exception": "Throttled"}', {"Retry-After": "1"}
        elif fault == "503":
            status, body, headers = 503, b'{"exception": "Unavailable"}', {}
        elif fault == "ratelimit":
            archive.rate_limit_reset = int(time.time()) + 1
            headers = {**headers, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(archive.rate_limit_reset)}
        headers = {"X-RateLimit-Limit": "1200", "X-RateLimit-Remaining": "1000",
                   "X-RateLimit-Reset": str(int(time.time()) + 3600), **headers}
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and closed the connection
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass


def route(archive: FakeArchive, raw_path: str) -> tuple[str, int, bytes, dict[str, str]]:
    """(route key, status, body, headers) of a request, without faults."""
    parsed = urlsplit(raw_path)
    path = unquote(parsed.path).removeprefix("/api/1/")
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    if match := re.fullmatch(r"origin/(.+)/visit/latest/", path):
        if match[1] != archive.origin or query.get("require_snapshot") != "true":
            return f"visit:{match[1]}", 404, b'{"exception": "NotFoundExc"}', {}
        visit = {"origin": archive.origin, "visit": 3, "date": "2024-05-01T10:11:12.345678+00:00",
                 "status": "full", "snapshot": archive.snapshot, "type": "git"}
        return "visit", 200, json.dumps(visit).encode(), {}
    if match := re.fullmatch(r"snapshot/(\w+)/", path):
        return snapshot_page(archive, query.get("branches_from", ""))
    for kind, table in (("revision", archive.revisions), ("release", archive.releases),
                        ("directory", archive.directories)):
        if (match := re.fullmatch(rf"{kind}/(\w+)/", path)) and match[1] in table:
            return f"{kind}:{match[1]}", 200, json.dumps(table[match[1]]).encode(), {}
    if match := re.fullmatch(r"content/sha1_git:(\w+)/raw/", path):
        key = f"content:{match[1]}"
        if archive.contents_down:
            return key, 500, b"down", {}
        if match[1] in archive.missing or match[1] not in archive.contents:
            return key, 404, b'{"exception": "NotFoundExc"}', {}
        return key, 200, archive.contents[match[1]], {"Content-Type": "application/octet-stream"}
    return f"unknown:{path}", 404, b"{}", {}


def snapshot_page(archive: FakeArchive, start: str) -> tuple[str, int, bytes, dict[str, str]]:
    """Two branches per page from `start`, the next page in a `Link` header."""
    names = sorted(archive.branches)
    first = next(i for i, name in enumerate(names) if name >= start)
    page = names[first:first + 2]
    body = {"id": archive.snapshot, "branches": {n: archive.branches[n] for n in page}}
    headers = {}
    if first + 2 < len(names):
        following = f"{archive.base}snapshot/{archive.snapshot}/?branches_from={quote(names[first + 2], safe='')}"
        headers["Link"] = f'<{following}>; rel="next"'
    return f"snapshot:{first // 2}", 200, json.dumps(body).encode(), headers


class FakeServer(ThreadingHTTPServer):
    archive: FakeArchive

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow answer is expected here


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[FakeArchive]:
    """The fake API, serving a fresh repository on 127.0.0.1 until the test ends."""
    fake = build_archive(make_repo(tmp_path / "repo"))
    server = FakeServer(("127.0.0.1", 0), Handler)
    server.archive = fake
    fake.base = f"http://127.0.0.1:{server.server_address[1]}/api/1/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def api_cfg(cfg: DictConfig, archive: FakeArchive, cache: Path) -> DictConfig:
    return with_overrides(cfg, executor={"workers": 1}, source={
        "kind": "swh_api", "api_url": archive.base, "origins": [ORIGIN, ABSENT], "max_file_bytes": MAX_FILE_BYTES,
        "request_timeout": TIMEOUT, "request_retries": 4, "download_workers": 4, "content_cache": str(cache)})


def pull(cfg: DictConfig, root: Path) -> tuple[list[dict], dict]:
    """Run the pull stage under `root`; its rows and metrics."""
    ctx = stage_context("pull", cfg, root)
    run_pull(ctx)
    rows = [row for shard in list_shards(root / layout.RAW) for row in pq.read_table(shard).to_pylist()]
    return rows, json.loads((root / "metrics/pull.json").read_text())


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_pull_through_faults_matches_local_and_resumes_from_cache(
        archive: FakeArchive, smoke_cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SWH_AUTH_TOKEN", TOKEN)
    repo = Repo(str(tmp_path / "repo"))
    tree = repo[repo[b"HEAD"].tree]
    pkg = repo[repo[tree[b"src"][1]][b"pkg"][1]]
    missing = pkg[b"util.py"][1].decode()
    big = tree[b"big.txt"][1].decode()
    archive.missing.add(missing)
    archive.faults = {"visit": ["429"], "snapshot:1": ["503"], f"directory:{pkg.id.decode()}": ["sleep"],
                      f"revision:{repo[b'HEAD'].id.decode()}": ["ratelimit"]}

    rows, metrics = pull(api_cfg(smoke_cfg, archive, tmp_path / "cache"), tmp_path / "api")
    local_cfg = with_overrides(smoke_cfg, executor={"workers": 1}, source={
        "max_file_bytes": MAX_FILE_BYTES, "origins": [{"name": "local/demo", "path": str(tmp_path / "repo")}]})
    local_rows, local_metrics = pull(local_cfg, tmp_path / "local")

    # Every fault was met, and the pull went through it.
    assert not any(archive.faults.values())
    visits = [r for r in archive.requests if r.key == "visit"]
    assert len(visits) == 2 and visits[1].at - visits[0].at >= 0.9  # Retry-After: 1 honoured
    assert len(archive.keys("snapshot:")) == 4  # 5 branches, 2 per page, page 2 retried after its 503
    assert len(archive.keys(f"directory:{pkg.id.decode()}")) == 2  # timed out once
    after_revision = archive.keys("directory:")[0]
    assert after_revision.at >= archive.rate_limit_reset  # waited for the window to reset
    assert "rate limit reached" in caplog.text
    assert not archive.keys(f"content:{big}")  # too large by its listed length: never downloaded

    # The same rows as the local source gives for the repository, less the missing file.
    def comparable(table: list[dict], drop: str | None) -> list[dict]:
        ignored = ("repo_name", "visit_date")
        return [{k: v for k, v in r.items() if k not in ignored} for r in table if r["path"] != drop]

    assert comparable(rows, None) == comparable(local_rows, MISSING_PATH)
    assert {r["repo_name"] for r in rows} == {"octo/demo"}
    assert {r["visit_date"] for r in rows} == {datetime(2024, 5, 1, 10, 11, 12, 345678, tzinfo=UTC)}
    assert {r["snapshot_id"] for r in rows} == {archive.snapshot}
    assert {r["branch_name"] for r in rows} == {"refs/heads/main"}
    summary = metrics["origins"]["octo/demo"]
    assert summary["files"] == len(rows) == local_metrics["files"] - 1
    expected_skips = {**local_metrics["skipped"], "content_missing": 1}
    assert {k: v for k, v in metrics["skipped"].items() if k != "origin_not_found"} == expected_skips
    assert {k: v for k, v in expected_skips.items() if v} == {"binary": 1, "too_large": 1, "symlink": 1,
                                                               "submodule": 1, "content_missing": 1}
    assert metrics["origins"]["gitlab.com/nobody/absent"]["skipped"] == {"origin_not_found": 1}
    assert metrics["origins"]["gitlab.com/nobody/absent"]["files"] == 0

    # The token went to the server on every request and nowhere else.
    assert {r.authorization for r in archive.requests} == {f"Bearer {TOKEN}"}
    for root in (tmp_path / "api", tmp_path / "cache"):
        assert TOKEN.encode() not in all_bytes(root)
    assert TOKEN not in caplog.text

    # A second pull with every content request failing: all from the cache, the same table.
    archive.contents_down = True
    seen = len(archive.requests)
    again, again_metrics = pull(api_cfg(smoke_cfg, archive, tmp_path / "cache"), tmp_path / "again")
    assert again == rows
    assert {r.key for r in archive.requests[seen:] if r.key.startswith("content:")} == {f"content:{missing}"}
    assert again_metrics["skipped"]["fetch_failed"] == 1 and again_metrics["skipped"]["content_missing"] == 0


def test_origins_are_named_as_the_stack_v2_and_checked(tmp_path: Path) -> None:
    assert repo_name("https://github.com/owner/repo") == "owner/repo"
    assert repo_name("https://github.com/owner/repo/") == "owner/repo"
    assert repo_name("https://gitlab.com/group/sub/proj") == "gitlab.com/group/sub/proj"
    source = ApiSource(source_cfg(["https://github.com/b/x", "https://github.com/a/y", "https://github.com/b/x"]),
                       tmp_path)
    assert source.origins() == [OriginRef("a/y", "https://github.com/a/y"), OriginRef("b/x", "https://github.com/b/x")]
    for bad in ([], [{"name": "x", "path": "."}]):
        with pytest.raises(ValueError, match="list of origin URLs"):
            ApiSource(source_cfg(bad), tmp_path).origins()
    with pytest.raises(ValueError, match="both get the name 'a/y'"):
        ApiSource(source_cfg(["https://github.com/a/y", "http://github.com/a/y"]), tmp_path).origins()


def test_default_branch_follows_head_then_main_then_master() -> None:
    rev = {"target": "1" * 40, "target_type": "revision"}
    assert default_branch({"HEAD": {"target": "refs/heads/dev", "target_type": "alias"},
                           "refs/heads/dev": rev, "refs/heads/main": rev}) == ("refs/heads/dev", "1" * 40, "revision")
    assert default_branch({"HEAD": {"target": "refs/heads/gone", "target_type": "alias"}, "refs/heads/gone": None,
                           "refs/heads/master": rev})[0] == "refs/heads/master"
    assert default_branch({"HEAD": {"target": "HEAD", "target_type": "alias"}}) is None
    assert default_branch({}) is None


def test_token_is_never_held_by_client_or_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWH_AUTH_TOKEN", TOKEN)
    source = ApiSource(source_cfg([ORIGIN]), tmp_path)
    client = source.api
    assert TOKEN not in repr(client) and "authenticated=True" in repr(client)
    assert TOKEN.encode() not in pickle.dumps(source) + pickle.dumps(client)
    copy = pickle.loads(pickle.dumps(client))
    assert isinstance(copy, ApiClient) and copy.api_url == client.api_url
    assert pickle.loads(pickle.dumps(source)).api.api_url == client.api_url  # as a worker process gets it
    # Sent to the API's host only, never to another host a `Link` header might name.
    assert client._headers(client.url("x/"))["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in client._headers("https://elsewhere.example/api/1/x/")


def source_cfg(origins: list[Any]) -> SourceConfig:
    return SourceConfig(kind="swh_api", max_file_bytes=1000, shard_target_bytes=1000, exclude=[], origins=origins,
                        opt_out="conf/source/opt_out.txt", encodings=["latin_1"], license_min_score=0.8)
