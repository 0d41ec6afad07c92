"""Where GHArchive event files come from: local files and directories, `s3://` keys and prefixes, http(s) URLs.

`issues.events` entries name files or directories relative to the repository root, `s3://bucket/key`
(one file) or `s3://bucket/prefix` (its `*.json.gz` keys in name order, as a directory's files), or
`https://…`/`http://…` URLs of single files. Any entry may hold bash-style brace ranges and lists,
expanded in order before anything is read: GHArchive's day is `https://data.gharchive.org/2024-01-01-{0..23}.json.gz`
(hours 0 to 23, unpadded; `{00..23}` pads them as bash does), and `{a,b}` lists alternatives.

Remote files are downloaded once into a local cache outside DVC's outs (`issues.events_cache`,
`.cache/starbuild/gharchive/` by default, next to the content cache), streamed to a `.partial` file
renamed when complete, so an interrupted run never reads half a file and the next run downloads only
what is missing. A cached S3 object is fetched again when its size differs; an http(s) file is
trusted once cached (GHArchive's hourly files never change). Failures that may pass (HTTP 429 and 5xx,
timeouts, dropped connections, S3 errors) are retried with exponential backoff, honouring
`Retry-After`; a missing file fails the stage with a message naming it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs
import requests
from tqdm import tqdm

from starbuild.core.stage import StageError
from starbuild.swh.retry_after import retry_after_s
from starbuild.swh.storage import S3Options, open_location

log = logging.getLogger(__name__)

# GHArchive's hourly files: `YYYY-MM-DD-H.json.gz`.
EVENT_FILES = "*.json.gz"
REMOTE_SCHEMES = ("s3", "http", "https")
CHUNK_BYTES = 1 << 20
# The first retry's wait; each further one doubles it, up to MAX_BACKOFF_S. Tests shorten it.
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
# The longest wait a server's `Retry-After` may ask for.
MAX_RETRY_AFTER_S = 3600.0
FIX = "fix conf/issues/"
# `{0..23}`, `{00..23}`, `{a,b}`: the first brace group without nested braces.
BRACES = re.compile(r"\{([^{}]*)\}")
RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


@dataclass(frozen=True)
class Fetching:
    """How remote event files are reached and cached."""

    cache: Path
    s3: S3Options = S3Options()
    timeout: float = 30.0
    retries: int = 6
    workers: int = 4


@dataclass(frozen=True)
class RemoteFile:
    """One remote event file: its URL and, for S3, its size (the cache's check)."""

    url: str
    size: int | None = None


def expand_braces(entry: str) -> list[str]:
    """`entry` with its brace groups expanded as bash does, left to right: `{0..3}`, `{08..10}`, `{a,b}`."""
    match = BRACES.search(entry)
    if match is None:
        return [entry]
    words = _brace_words(match.group(1))
    if words is None:  # `{x}` alone is literal in bash too
        return [entry[:match.end()] + rest for rest in expand_braces(entry[match.end():])]
    head, tail = entry[:match.start()], expand_braces(entry[match.end():])
    return [head + word + rest for word, rest in itertools.product(words, tail)]


def _brace_words(body: str) -> list[str] | None:
    """The words of one brace group's body, or None when it is not a range or a list."""
    bounds = RANGE.fullmatch(body)
    if bounds:
        first, last = bounds.group(1), bounds.group(2)
        start, stop = int(first), int(last)
        step = 1 if stop >= start else -1
        # bash pads every word to the longer bound's width when either bound has a leading zero.
        padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in (first, last))
        width = max(len(first), len(last)) if padded else 0
        return [str(n).zfill(width) for n in range(start, stop + step, step)]
    return body.split(",") if "," in body else None


def is_remote(location: str) -> bool:
    """Whether `location` is an s3:// or http(s):// URL."""
    return urlparse(location).scheme in REMOTE_SCHEMES


def resolve(root: Path, entries: Iterable[str], s3: S3Options) -> list[Path | RemoteFile]:
    """Every event file the entries name, in order; fails naming the entry that names nothing."""
    found: list[Path | RemoteFile] = []
    for entry in entries:
        for location in expand_braces(str(entry)):
            scheme = urlparse(location).scheme
            if scheme == "s3":
                found.extend(_s3_files(location, s3))
            elif scheme in ("http", "https"):
                found.append(RemoteFile(location))
            else:
                found.extend(_local_files(root, location))
    return found


def _local_files(root: Path, location: str) -> list[Path]:
    """A local file, or a directory's `*.json.gz` in name order."""
    path = Path(location) if Path(location).is_absolute() else root / location
    if path.is_dir():
        return sorted(path.glob(EVENT_FILES))
    if path.is_file():
        return [path]
    raise StageError(f"issues.events: {location} does not exist; {FIX}")


def _s3_files(url: str, s3: S3Options) -> list[RemoteFile]:
    """An S3 key, or a prefix's `*.json.gz` keys (not those of deeper prefixes) in name order."""
    fs, base = open_location(url, s3)
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            return [RemoteFile(url, info.size)]
        if info.type != pafs.FileType.Directory:
            raise StageError(f"issues.events: {url} is neither a key nor a prefix of the bucket; {FIX}")
        listed = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    except OSError as err:
        raise StageError(f"issues.events: cannot list {url} ({_first_line(err)}); check issues.s3_endpoint, "
                         f"issues.s3_anonymous and credentials") from err
    keys = sorted((item.path, item.size) for item in listed
                  if item.type == pafs.FileType.File and Path(item.path).match(EVENT_FILES))
    return [RemoteFile(f"s3://{path}", size) for path, size in keys]


def cache_path(cache: Path, url: str, s3: S3Options) -> Path:
    """Where the cache keeps `url`: by scheme, server (the S3 endpoint, else `aws`), then the URL's path."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        server = (urlparse(s3.endpoint).netloc or s3.endpoint) if s3.endpoint else "aws"
        parts = ["s3", server, parsed.netloc, *parsed.path.split("/")]
    else:
        parts = [parsed.scheme, parsed.netloc, *parsed.path.split("/")]
    parts = [part.replace(":", "_") for part in parts if part not in ("", ".", "..")]
    if parsed.query:  # two queries of one path are two files
        parts[-1] += "-" + hashlib.sha256(parsed.query.encode()).hexdigest()[:16]
    return cache.joinpath(*parts)


def fetch(files: list[Path | RemoteFile], fetching: Fetching) -> list[Path]:
    """The local path of every file, remote ones downloaded into the cache first (unless cached already)."""
    targets = [file if isinstance(file, Path) else cache_path(fetching.cache, file.url, fetching.s3)
               for file in files]
    wanted = {target: file for file, target in zip(files, targets, strict=True)
              if isinstance(file, RemoteFile) and not _cached(target, file)}
    remote = sum(isinstance(file, RemoteFile) for file in files)
    if remote:
        log.info("issues.events: %d remote files, %d cached in %s, %d to download", remote, remote - len(wanted),
                 fetching.cache, len(wanted))
    if wanted:
        with ThreadPoolExecutor(max_workers=fetching.workers) as pool:
            jobs = pool.map(lambda item: _download(item[1], item[0], fetching), wanted.items())
            for _ in tqdm(jobs, total=len(wanted), desc="event files", unit="file", disable=not sys.stderr.isatty()):
                pass
    return targets


def _cached(target: Path, file: RemoteFile) -> bool:
    """Whether the cache holds the whole file (a rename made it, so it is never half a file)."""
    return target.is_file() and (file.size is None or target.stat().st_size == file.size)


class _Retry(Exception):
    """An answer worth retrying: why, and the wait the server asked for (None: back off)."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.wait_s = wait_s


def _download(file: RemoteFile, target: Path, fetching: Fetching) -> None:
    """Fetch `file` into `target` through `<target>.partial`, retrying what may pass."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    copy = _copy_s3 if urlparse(file.url).scheme == "s3" else _copy_http
    failure = ""
    for attempt in range(fetching.retries):
        try:
            copy(file.url, partial, fetching)
        except _Retry as err:
            failure, wait = str(err), err.wait_s
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                OSError) as err:
            failure, wait = f"{type(err).__name__}: {_first_line(err)}", None
        else:
            partial.replace(target)
            return
        if attempt + 1 < fetching.retries:
            wait = _backoff_s(attempt) if wait is None else wait
            log.info("%s: %s, retry %d/%d in %.1f s", file.url, failure, attempt + 1, fetching.retries - 1, wait)
            time.sleep(wait)
    partial.unlink(missing_ok=True)
    raise StageError(f"issues.events: {file.url} failed after {fetching.retries} tries ({failure}); "
                     "retry later, or raise issues.request_retries")


def _copy_http(url: str, partial: Path, fetching: Fetching) -> None:
    """Stream `url` into `partial`; 404 and other refusals fail the stage, 429 and 5xx are worth a retry."""
    with requests.get(url, stream=True, timeout=fetching.timeout,
                      headers={"User-Agent": "starbuild (issues stage)"}) as response:
        status = response.status_code
        if status == 404:
            raise StageError(f"issues.events: {url} does not exist (HTTP 404); {FIX}")
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after_s(response, MAX_RETRY_AFTER_S))
        if status != 200:
            raise StageError(f"issues.events: {url} answered HTTP {status}; {FIX}")
        _write(partial, response.iter_content(CHUNK_BYTES))


def _copy_s3(url: str, partial: Path, fetching: Fetching) -> None:
    """Stream the S3 object `url` into `partial`."""
    fs, path = open_location(url, fetching.s3)
    # pyarrow would gunzip a `.gz` key by default: the cache keeps the object's own bytes.
    with fs.open_input_stream(path, compression=None) as stream:
        _write(partial, iter(lambda: stream.read(CHUNK_BYTES), b""))


def _write(path: Path, chunks: Iterator[bytes]) -> None:
    """Write the chunks to `path` (truncating what an interrupted run left)."""
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)


def _backoff_s(attempt: int) -> float:
    return min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S)


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]
