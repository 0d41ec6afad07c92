"""GHArchive event files from S3 (a moto server) and http(s) (a loopback server with faults), and the
out-of-core grouping that turns any number of event files into conversations one at a time."""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.issues import sources
from starbuild.issues.events import Grouping, iter_conversations, read_events
from starbuild.issues.sources import expand_braces
from starbuild.issues.stage import run_issues
from tests.factories import file_bytes, stage_context, stage_metrics, table_rows, with_overrides
from tests.projects import moto_server
from tests.test_issues import gh_event, write_hour

HOUR = "corpus/gharchive/2024-01-01-0.json.gz"
BUCKET = "gharchive-test"
# Low enough that the fixture's short single-user issue is kept too: two rows to compare, not one.
THRESHOLDS = {"min_chars": 10}


# --- Servers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server holding the fixture hour under `events/` in a bucket anyone may read."""
    import boto3

    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="owner",
                              aws_secret_access_key="owner")
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(Path(__file__).parents[1] / HOUR), BUCKET, "events/2024-01-01-0.json.gz")
        # Neither an event file nor at the prefix's level: a listing leaves both out.
        client.put_object(Bucket=BUCKET, Key="events/README.txt", Body=b"not events")
        client.put_object(Bucket=BUCKET, Key="events/older/2023-01-01-0.json.gz", Body=b"not read")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
             "Resource": f"arn:aws:s3:::{BUCKET}/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}]}
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
        yield endpoint


class Archive(ThreadingHTTPServer):
    """Serves the fixture hour as GHArchive names it; `faults[path]` are answered first, `requests` logged."""

    body: bytes
    faults: dict[str, list[str]]
    requests: list[str]


class Handler(BaseHTTPRequestHandler):
    server: Archive

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        queued = self.server.faults.get(self.path) or []
        fault = queued.pop(0) if queued else None
        if self.path != "/2024-01-01-0.json.gz":
            self.answer(404, b"Not Found")
        elif fault == "503":
            self.answer(503, b"busy")
        elif fault == "429":
            self.answer(429, b"slow down", {"Retry-After": "0"})
        elif fault == "cut":  # promises the whole file, sends half, hangs up
            self.answer(200, self.server.body[: len(self.server.body) // 2], length=len(self.server.body))
            self.close_connection = True
        else:
            self.answer(200, self.server.body)

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
               length: int | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Archive, str]]:
    """The loopback archive and its base URL; retries wait milliseconds, not seconds."""
    monkeypatch.setattr(sources, "BACKOFF_S", 0.01)
    server = Archive(("127.0.0.1", 0), Handler)
    server.body = (Path(__file__).parents[1] / HOUR).read_bytes()
    server.faults, server.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run(cfg: DictConfig, root: Path, **issues: Any) -> StageContext:
    """The issues stage under `root` with `issues` set; its context."""
    ctx = stage_context("issues", with_overrides(cfg, issues={**THRESHOLDS, **issues}), root)
    run_issues(ctx)
    return ctx


# --- The stage, whichever way the events come ------------------------------------------------------------


def test_s3_and_https_give_the_local_bytes_and_the_cache_is_reused(
    s3: str, archive: tuple[Archive, str], smoke_cfg: DictConfig, tmp_path: Path,
) -> None:
    server, base = archive
    local = run(smoke_cfg, tmp_path / "local", events=[HOUR])
    expected = file_bytes(local.root, layout.ISSUES)
    assert len(table_rows(local.root / layout.ISSUES)) == 2
    assert stage_metrics(local)["events"] == {"kept": 6, "lines": 8, "other_type": 1, "pull_request": 1}

    env = {k: os.environ.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
    try:  # unsigned, as for a public bucket: no credentials anywhere
        on_s3 = run(smoke_cfg, tmp_path / "s3", events=[f"s3://{BUCKET}/events"], s3_endpoint=s3)
        by_key = run(smoke_cfg, tmp_path / "key", events=[f"s3://{BUCKET}/events/2024-01-01-0.json.gz"],
                     s3_endpoint=s3)
    finally:
        os.environ.update(env)
    server.faults["/2024-01-01-0.json.gz"] = ["503", "429", "cut"]
    over_http = run(smoke_cfg, tmp_path / "http", events=[f"{base}/2024-01-01-{{0..0}}.json.gz"])
    assert not server.faults["/2024-01-01-0.json.gz"]  # every fault was met and retried through
    for ctx in (on_s3, by_key, over_http):
        assert file_bytes(ctx.root, layout.ISSUES) == expected
        assert stage_metrics(ctx) == stage_metrics(local)
    cached = list((tmp_path / "http/.cache/starbuild/gharchive").rglob("*"))
    assert [p.name for p in cached if p.is_file()] == ["2024-01-01-0.json.gz"]  # no partial left

    # A second run reads the cached file: the server sees no new request.
    seen = len(server.requests)
    again = run(smoke_cfg, tmp_path / "http", events=[f"{base}/2024-01-01-0.json.gz"])
    assert len(server.requests) == seen and file_bytes(again.root, layout.ISSUES) == expected


def test_a_partial_download_is_never_read(archive: tuple[Archive, str], smoke_cfg: DictConfig,
                                          tmp_path: Path) -> None:
    server, base = archive
    url = f"{base}/2024-01-01-0.json.gz"
    target = sources.cache_path(tmp_path / ".cache/starbuild/gharchive", url, sources.S3Options())
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".partial").write_bytes(server.body[:100])  # a killed run's
    ctx = run(smoke_cfg, tmp_path, events=[url])
    assert target.read_bytes() == server.body and not target.with_name(target.name + ".partial").exists()
    assert stage_metrics(ctx)["events"]["kept"] == 6


def test_a_missing_url_fails_in_one_line_naming_it(archive: tuple[Archive, str], smoke_cfg: DictConfig,
                                                  tmp_path: Path) -> None:
    _, base = archive
    url = f"{base}/2024-01-01-1.json.gz"
    with pytest.raises(StageError) as err:
        run(smoke_cfg, tmp_path, events=[HOUR, url])
    message = str(err.value)
    assert "\n" not in message and url in message and "404" in message and "fix conf/issues/" in message
    assert not (tmp_path / layout.ISSUES).exists()


def test_an_s3_prefix_that_holds_nothing_fails_naming_it(s3: str, smoke_cfg: DictConfig, tmp_path: Path) -> None:
    with pytest.raises(StageError, match=rf"s3://{BUCKET}/nothing-here is neither a key nor a prefix"):
        run(smoke_cfg, tmp_path, events=[f"s3://{BUCKET}/nothing-here"], s3_endpoint=s3)


@pytest.mark.parametrize(("entry", "expected"), [
    ("h/2024-01-01-{0..2}.json.gz", ["h/2024-01-01-0.json.gz", "h/2024-01-01-1.json.gz", "h/2024-01-01-2.json.gz"]),
    ("{08..10}", ["08", "09", "10"]),
    ("{2..0}", ["2", "1", "0"]),
    ("{a,b}-{1..2}", ["a-1", "a-2", "b-1", "b-2"]),
    ("plain/{x}.json.gz", ["plain/{x}.json.gz"]),
])
def test_brace_ranges_expand_in_order_as_bash_does(entry: str, expected: list[str]) -> None:
    assert expand_braces(entry) == expected


def test_a_bad_group_memory_is_refused(smoke_cfg: DictConfig, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="group_memory"):
        run(smoke_cfg, tmp_path, events=[HOUR], group_memory="lots")


# --- Grouping out of core ----------------------------------------------------------------------------------


def test_many_conversations_stream_in_order_and_duplicates_across_files_count_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    events = [gh_event("comment", f"user-{i % 5}", rng.randrange(3600), 10_000 + i, f"c{i}", number=1 + i % 300)
              for i in range(3000)]
    events += [gh_event("opened", "alice-dev", 0, 9_000 + n, f"issue {n}", number=n) for n in range(1, 301)]
    rng.shuffle(events)
    files = [write_hour(tmp_path / f"2024-01-01-{k}.json.gz", events[k::3]) for k in range(3)]
    # The first file again under another name, and a fourth file repeating some events of the second.
    files.append(write_hour(tmp_path / "again.json.gz", events[0::3]))
    files.append(write_hour(tmp_path / "some.json.gz", events[1::3][:50]))
    counts: Counter[str] = Counter()
    stream = iter_conversations(files, counts, memory_limit="64MB")
    first = next(stream)  # one at a time: a generator, not a list
    conversations = [first, *stream]
    assert [c.number for c in conversations] == list(range(1, 301))
    assert counts["kept"] == len(events) and counts["duplicate"] == len(events[0::3]) + 50
    for conv in conversations:
        assert conv.events[0].kind == "opened" and conv.title == "Crash when parsing an empty config"
        keys = [(e.created_at, int(e.id)) for e in conv.events]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert read_events(files[:3])[0] == conversations  # the same without the repeated files


def grouped(records: list[tuple], schema: pa.Schema, counts: Counter[str] | None = None, **spec: Any) -> list:
    """Every group of `records`, added one by one to a Grouping of `spec`."""
    with Grouping(schema, **spec) as grouping:
        for record in records:
            grouping.add(record)
        return list(grouping.groups(counts))


def test_grouping_contract(tmp_path: Path) -> None:
    schema = pa.schema([("repo", pa.string()), ("number", pa.int64()), ("at", pa.int64()), ("id", pa.string()),
                        ("body", pa.string())])
    records = [("b", 2, 5, "x1", "late"), ("a", 10, 1, "x2", "a10"), ("b", 2, 1, "x3", "early"),
               ("a", 9, 1, "x4", "a9"), ("b", 2, 1, "x1", "repeat of x1"), ("b", 2, 1, "x5", "tie after x3")]
    counts: Counter[str] = Counter()
    groups = grouped(records, schema, counts, key=("repo", "number"), order=("at",), payload=("body", "id"),
                     unique="id", work=tmp_path, batch_rows=2)
    assert [(g.key, g.rows) for g in groups] == [
        (("a", 9), [("a9", "x4")]), (("a", 10), [("a10", "x2")]),
        (("b", 2), [("early", "x3"), ("tie after x3", "x5"), ("late", "x1")])]
    assert counts == {"kept": 5, "duplicate": 1}
    assert list(tmp_path.iterdir()) == []  # its database went with it
    assert grouped([], schema, key=("repo",), order=(), payload=("body",)) == []
