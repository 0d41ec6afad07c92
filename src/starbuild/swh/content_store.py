"""File contents by sha1 from a content store laid out as SWH's (`<root>/<sha1>`, gzip), with a local cache.

The store is a local mirror, `s3://softwareheritage/content` (public) or any http(s) server with the same
layout. Every object is checked against its sha1 before use; what cannot be had is a ContentError
with a named reason, which the pull counts. Fetched contents are kept in a local cache (by sha1, never
inside DVC's outs), so an interrupted pull resumes without downloading anything twice.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import threading
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from starbuild.swh.storage import S3Options, open_location


class ContentError(Exception):
    """A content that could not be had; `reason` is the name the pull counts it under."""

    def __init__(self, sha1: str, reason: str, detail: str = "") -> None:
        super().__init__(f"content {sha1}: {reason}{': ' + detail if detail else ''}")
        self.sha1 = sha1
        self.reason = reason


MISSING = "content_missing"  # not in the store (404, NoSuchKey)
CORRUPT = "content_corrupt"  # not gzip, or its bytes do not hash to its name
FAILED = "fetch_failed"  # the store did not answer after every retry


class ContentCache:
    """Contents kept on local disk by sha1 (`<dir>/<sha1[:2]>/<sha1>`), checked on every read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, sha1: str) -> bytes | None:
        """The cached bytes of `sha1`, or None when absent or damaged."""
        path = self.directory / sha1[:2] / sha1
        if not path.is_file():
            return None
        data = path.read_bytes()
        # A cache file cut short by a crash is never trusted: it is fetched again.
        return data if hashlib.sha1(data).hexdigest() == sha1 else None

    def put(self, sha1: str, data: bytes) -> None:
        """Keep `data` under `sha1`, written whole or not at all."""
        path = self.directory / sha1[:2] / sha1
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{sha1}.{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_bytes(data)
        partial.replace(path)


class ContentStore:
    """Read-only contents by sha1 from `url`, through a local cache."""

    def __init__(self, url: str, cache: ContentCache | None, s3: S3Options, timeout: float = 30.0,
                 retries: int = 6) -> None:
        self.url = url.rstrip("/")
        self.cache = cache
        self.timeout = timeout
        self.retries = retries
        self._http = urlparse(url).scheme in ("http", "https")
        self._fs, self._base = (None, "") if self._http else open_location(url, s3)

    def fetch(self, sha1: str) -> bytes:
        """The bytes of the content `sha1`, from the cache or the store; ContentError when it cannot be had."""
        cached = self.cache.get(sha1) if self.cache else None
        if cached is not None:
            return cached
        compressed = self._read(sha1)
        try:
            data = gzip.decompress(compressed)
        except (OSError, EOFError, zlib.error) as err:
            raise ContentError(sha1, CORRUPT, f"not a gzip stream ({err})") from err
        if hashlib.sha1(data).hexdigest() != sha1:
            raise ContentError(sha1, CORRUPT, "its bytes do not hash to its sha1")
        if self.cache:
            self.cache.put(sha1, data)
        return data

    def fetch_many(self, sha1s: Iterable[str], workers: int, desc: str = "contents") -> dict[str, bytes | ContentError]:
        """Every content of `sha1s` or the error it gave, fetched `workers` at a time (a progress bar on a TTY)."""
        wanted = sorted(set(sha1s))

        def one(sha1: str) -> bytes | ContentError:
            try:
                return self.fetch(sha1)
            except ContentError as err:
                return err

        from tqdm import tqdm  # here: a local pull's workers never fetch, and the import is ~10 ms of their start

        with ThreadPoolExecutor(max_workers=workers) as pool:
            fetched = tqdm(pool.map(one, wanted), total=len(wanted), desc=desc, unit="file",
                           disable=not sys.stderr.isatty())
            return dict(zip(wanted, fetched, strict=True))

    def _read(self, sha1: str) -> bytes:
        for attempt in range(self.retries):
            try:
                return self._read_http(sha1) if self._http else self._read_fs(sha1)
            except ContentError:
                raise
            except (OSError, ConnectionError) as err:  # a flaky network: back off and retry
                if attempt == self.retries - 1:
                    raise ContentError(sha1, FAILED, str(err).splitlines()[0]) from err
                time.sleep(min(0.1 * 2**attempt, 10.0))
        raise AssertionError("unreachable")

    def _read_fs(self, sha1: str) -> bytes:
        assert self._fs is not None
        path = f"{self._base}/{sha1}"
        try:
            with self._fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError as err:
            raise ContentError(sha1, MISSING) from err
        except OSError as err:
            # pyarrow reports a missing S3 key as an OSError naming it, not as FileNotFoundError.
            if self._fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise ContentError(sha1, MISSING) from err
            raise

    def _read_http(self, sha1: str) -> bytes:
        import requests

        try:
            response = requests.get(f"{self.url}/{sha1}", timeout=self.timeout)
        except requests.RequestException as err:
            raise ConnectionError(str(err)) from err
        if response.status_code == 404:
            raise ContentError(sha1, MISSING)
        if response.status_code == 429 or response.status_code >= 500:
            raise ConnectionError(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ContentError(sha1, FAILED, f"HTTP {response.status_code}")
        return response.content
