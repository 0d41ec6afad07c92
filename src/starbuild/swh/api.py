"""The `swh_api` source: origins pulled file by file through the Software Heritage Web API.

Flow per origin: latest visit with a snapshot → snapshot branches (every page) → the default branch's
revision → its root directory, walked one level per request → every file's raw bytes by sha1_git.
Contents are verified against the listing's checksums and cached by sha1, so an interrupted pull
resumes without downloading anything twice. The API allows 120 requests an hour (1200 with a token
from $SWH_AUTH_TOKEN), so this suits small origins and spot checks, not bulk pulls.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlparse

import requests

from starbuild.swh.content_store import CORRUPT, FAILED, MISSING, ContentCache, ContentError
from starbuild.swh.hashing import sha1_git, sha1_hex
from starbuild.swh.origins import Checkout, OriginFile
from starbuild.swh.records import origin_rows
from starbuild.swh.retry_after import retry_after_s
from starbuild.swh.source import OriginRef, OriginSummary, SourceConfig, repo_name, write_origin

log = logging.getLogger(__name__)

TOKEN_ENV = "SWH_AUTH_TOKEN"
# No wait is longer than the API's rate-limit window (an hour), whatever a header asks for.
MAX_WAIT_S = 3600.0
# Backoff between retries doubles from a base up to this.
MAX_BACKOFF_S = 60.0
# The largest snapshot page the API serves.
BRANCHES_PER_PAGE = 1000
# Branches tried, in order, when HEAD does not lead to a revision.
FALLBACK_BRANCHES = ("refs/heads/main", "refs/heads/master")
_MODE_MASK = 0o170000
_MODE_SYMLINK = 0o120000


class ApiError(Exception):
    """An API request that failed for good: a status that is not retried, or retries exhausted."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url


class NotFound(ApiError):
    """HTTP 404: the archive does not have the object."""


class ApiUnavailable(ApiError):
    """Every try of a retryable request failed (429, 5xx, timeouts, connection errors)."""


class ApiClient:
    """A small thread-safe client of the SWH Web API: retries, rate-limit pacing and `Link` pagination.

    The bearer token is read from $SWH_AUTH_TOKEN at every request and never kept, so neither repr nor
    pickling can reveal it. Each thread has its own `requests.Session` (sessions are not documented as
    thread-safe); the rate-limit pause is shared by all threads.
    """

    def __init__(self, api_url: str, timeout: float, retries: int, backoff: float) -> None:
        if urlparse(api_url).scheme not in ("http", "https"):
            raise ValueError(f"api_url must be an http(s) URL, got {api_url!r}; fix source.api_url in conf/source/")
        self.api_url = api_url.rstrip("/") + "/"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def __repr__(self) -> str:
        return f"ApiClient({self.api_url!r}, authenticated={bool(os.environ.get(TOKEN_ENV))})"

    def __getstate__(self) -> dict[str, Any]:
        # Sessions and locks do not cross processes; the receiving process opens its own.
        return {k: getattr(self, k) for k in ("api_url", "timeout", "retries", "backoff")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as `revision/<id>/`."""
        # Not urljoin: it would fold the `//` of an origin URL inside the path (`origin/https://…`).
        return self.api_url + path.lstrip("/")

    def get(self, url: str, params: dict[str, str] | None = None) -> requests.Response:
        """A successful response to GET `url`; NotFound on 404, ApiError on other failures."""
        failure = ""
        for attempt in range(self.retries):
            self._wait_for_window()
            try:
                response = self._session().get(url, params=params, headers=self._headers(url), timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
                failure, delay = type(err).__name__, self._backoff_s(attempt)
            else:
                self._note_rate_limit(response)
                if response.status_code < 400:
                    return response
                if response.status_code == 404:
                    raise NotFound(url, "HTTP 404")
                if not _retryable(response.status_code):
                    raise ApiError(url, f"HTTP {response.status_code}")
                failure = f"HTTP {response.status_code}"
                delay = retry_after_s(response, MAX_WAIT_S) if response.status_code in (429, 503) else None
                delay = self._backoff_s(attempt) if delay is None else delay
            if attempt + 1 < self.retries:
                log.info("%s: %s, retry %d/%d in %.1f s", url, failure, attempt + 1, self.retries - 1, delay)
                time.sleep(delay)
        raise ApiUnavailable(url, f"{failure} after {self.retries} tries")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The JSON body of GET `path` (relative to the API root)."""
        return self.get(self.url(path), params).json()

    def pages(self, path: str, params: dict[str, str] | None = None) -> Iterator[Any]:
        """The JSON body of every page of `path`, following `Link: <…>; rel="next"`."""
        url: str | None = self.url(path)
        while url:
            response = self.get(url, params)
            yield response.json()
            following = response.links.get("next", {}).get("url")
            # The next URL carries its own query; a relative one is resolved against the current page.
            url, params = (urljoin(url, following) if following else None), None

    def raw(self, path: str) -> bytes:
        """The body of GET `path` as bytes."""
        return self.get(self.url(path)).content

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["User-Agent"] = "starbuild (swh_api source)"
        return session

    def _headers(self, url: str) -> dict[str, str]:
        token = os.environ.get(TOKEN_ENV)
        # The token goes to the API's own host only, whatever a `Link` header points at.
        if not token or urlparse(url).netloc != urlparse(self.api_url).netloc:
            return {"Accept": "application/json"}
        return {"Accept": "application/json", "Authorization": f"Bearer {token}"}

    def _backoff_s(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt, MAX_BACKOFF_S)

    def _wait_for_window(self) -> None:
        """Sleep while the rate-limit window is spent (every thread waits for the same reset)."""
        with self._lock:
            resume_at = self._resume_at
        pause = resume_at - time.time()
        if pause > 0:
            time.sleep(pause)

    def _note_rate_limit(self, response: requests.Response) -> None:
        """When the window is spent (`X-RateLimit-Remaining: 0`), hold every request until its reset."""
        if response.headers.get("X-RateLimit-Remaining", "").strip() != "0":
            return
        try:
            reset = float(response.headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            return
        now = time.time()
        resume_at = min(reset, now + MAX_WAIT_S)
        with self._lock:
            if resume_at <= self._resume_at:
                return  # another thread already saw this window end
            self._resume_at = resume_at
        log.warning("SWH API rate limit reached (limit %s/window): waiting %.1f s for the window to reset",
                    response.headers.get("X-RateLimit-Limit", "?"), max(0.0, resume_at - now))


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def parse_date(value: Any) -> datetime | None:
    """An API date (ISO 8601 with an offset) as a UTC datetime; None when absent."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class RemoteFile:
    """A regular file of a directory listing, not yet fetched."""

    path: str
    sha1_git: str
    sha1: str | None
    executable: bool


class ApiSource:
    """Origins (URLs) pulled through the SWH Web API (`source.kind: swh_api`)."""

    def __init__(self, cfg: SourceConfig, repo_root: Path) -> None:
        self.cfg = cfg
        self.repo_root = repo_root
        self._api: ApiClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The source travels to worker processes; each opens its own client there.
        return {**self.__dict__, "_api": None}

    @property
    def api(self) -> ApiClient:
        """This process's client (made on first use)."""
        if self._api is None:
            # There is no key for the backoff: it scales with the timeout, so a short test timeout keeps it short.
            backoff = min(1.0, self.cfg.request_timeout / 10)
            self._api = ApiClient(self.cfg.api_url, self.cfg.request_timeout, self.cfg.request_retries, backoff)
        return self._api

    def origins(self) -> list[OriginRef]:
        """One OriginRef per configured URL, sorted by name; fails naming the fix for a bad list."""
        urls = list(self.cfg.origins)
        if not urls or not all(isinstance(u, str) and u.strip() for u in urls):
            raise ValueError("source.origins must be a non-empty list of origin URLs (strings) for kind swh_api, "
                             "e.g. [https://github.com/owner/repo]; fix it in conf/source/")
        by_name: dict[str, str] = {}
        for url in sorted({u.strip() for u in urls}):
            name = repo_name(url)
            if name in by_name:
                raise ValueError(f"origins {by_name[name]} and {url} both get the name '{name}'; keep one of them "
                                 "in source.origins")
            by_name[name] = url
        return [OriginRef(name, url) for name, url in sorted(by_name.items())]

    def pull_origin(self, origin: OriginRef, destination: Path) -> OriginSummary:
        """Walk the origin's default branch in the archive and write its rows."""
        checkout = self._checkout(str(origin.ref))
        files: list[OriginFile] = []
        if checkout.directory_id:
            with ThreadPoolExecutor(max_workers=self.cfg.download_workers) as pool:
                listed = walk_tree(self.api, pool, checkout, self.cfg.max_file_bytes)
                files = fetch_files(self.api, pool, self._cache(), listed, checkout, origin.name)
        rows = origin_rows(origin.name, files, checkout, [], self.cfg.row_options())
        return write_origin(origin.name, rows, checkout, [], destination)

    def _cache(self) -> ContentCache:
        return ContentCache(self.repo_root / self.cfg.content_cache)

    def _checkout(self, url: str) -> Checkout:
        """The ids and dates of the origin's latest archived state; skips counted when there is none."""
        checkout = Checkout()
        try:
            visit = self.api.get_json(f"origin/{quote(url, safe=':/')}/visit/latest/", {"require_snapshot": "true"})
        except NotFound:
            log.warning("origin %s is not in the archive (or has no visit with a snapshot)", url)
            checkout.skip("origin_not_found")
            return checkout
        if not visit.get("snapshot"):  # require_snapshot rules this out; a server that ignores it
            checkout.skip("origin_not_found")
            return checkout
        checkout.snapshot_id = visit["snapshot"]
        checkout.visit_date = parse_date(visit.get("date"))
        branches = snapshot_branches(self.api, checkout.snapshot_id)
        chosen = default_branch(branches)
        if chosen is None:
            reason = "no_default_branch" if branches else "empty_repository"
            log.warning("origin %s: snapshot %s has no usable default branch", url, checkout.snapshot_id)
            checkout.skip(reason)
            return checkout
        checkout.branch_name, target, target_type = chosen
        revision = self.api.get_json(f"revision/{revision_of(self.api, target, target_type)}/")
        checkout.revision_id = revision["id"]
        checkout.directory_id = revision["directory"]
        checkout.revision_date = parse_date(revision.get("date"))
        checkout.committer_date = parse_date(revision.get("committer_date"))
        return checkout


def snapshot_branches(api: ApiClient, snapshot: str) -> dict[str, dict[str, Any] | None]:
    """Every branch of a snapshot (name → {target, target_type}, None when dangling), over all pages."""
    branches: dict[str, dict[str, Any] | None] = {}
    for page in api.pages(f"snapshot/{snapshot}/", {"branches_count": str(BRANCHES_PER_PAGE)}):
        branches.update(page.get("branches") or {})
    return branches


def default_branch(branches: dict[str, dict[str, Any] | None]) -> tuple[str, str, str] | None:
    """(name, target, target_type) of the branch HEAD leads to, else of main or master; None if none."""
    candidates = ["HEAD", *FALLBACK_BRANCHES]
    for name in candidates:
        seen: set[str] = set()
        # Follow aliases (HEAD → refs/heads/<default>), never around a loop.
        while name not in seen and (branch := branches.get(name)) and branch.get("target_type") == "alias":
            seen.add(name)
            name = branch["target"]
        branch = branches.get(name)
        if branch and branch.get("target_type") in ("revision", "release"):
            return name, branch["target"], branch["target_type"]
    return None


def revision_of(api: ApiClient, target: str, target_type: str) -> str:
    """The revision a branch target leads to (a release is followed to the revision it names)."""
    for _ in range(8):  # a release of a release is legal; a chain this long is not plausible
        if target_type == "revision":
            return target
        if target_type != "release":
            break
        release = api.get_json(f"release/{target}/")
        target, target_type = release["target"], release["target_type"]
    raise ApiError(api.url(f"release/{target}/"), f"leads to a {target_type}, not a revision")


def walk_tree(api: ApiClient, pool: ThreadPoolExecutor, checkout: Checkout, max_file_bytes: int) -> list[RemoteFile]:
    """Every regular file under the checkout's root directory, one level per round of requests.

    Symlinks, submodules and files of `max_file_bytes` or more are counted in `checkout`, not listed
    (the listing's `length` decides, so a large file is never downloaded).
    """
    files: list[RemoteFile] = []
    level = [("", checkout.directory_id)]
    while level:
        listings = pool.map(lambda item: _listing(api, item[1]), level)
        next_level: list[tuple[str, str]] = []
        for (prefix, _), entries in zip(level, listings, strict=True):
            if entries is None:
                checkout.skip("missing_object")
                continue
            for entry in entries:
                subdir = _place_entry(entry, prefix, files, checkout, max_file_bytes)
                if subdir:
                    next_level.append(subdir)
        level = next_level
    return files


def _listing(api: ApiClient, directory: str) -> list[dict[str, Any]] | None:
    """A directory's entries over every page; None when the archive lacks it (counted by the caller)."""
    try:
        return [entry for page in api.pages(f"directory/{directory}/") for entry in page]
    except NotFound:
        log.warning("directory %s is not in the archive", directory)
        return None


def _place_entry(entry: dict[str, Any], prefix: str, files: list[RemoteFile], checkout: Checkout,
                max_file_bytes: int) -> tuple[str, str] | None:
    """File the entry under files or skips; a subdirectory to walk next is returned as (prefix, id)."""
    path = f"{prefix}{entry['name']}"
    perms = int(entry.get("perms") or 0)
    if entry["type"] == "dir":
        return f"{path}/", entry["target"]
    if entry["type"] == "rev":
        checkout.skip("submodule")
    elif entry["type"] != "file":
        checkout.skip("special_file")
    elif perms & _MODE_MASK == _MODE_SYMLINK:
        checkout.skip("symlink")
    elif entry.get("length") is not None and int(entry["length"]) >= max_file_bytes:
        checkout.skip("too_large")
    else:
        sha1 = (entry.get("checksums") or {}).get("sha1")
        files.append(RemoteFile(path, entry["target"], sha1, bool(perms & 0o111)))
    return None


def fetch_files(api: ApiClient, pool: ThreadPoolExecutor, cache: ContentCache, listed: list[RemoteFile],
                checkout: Checkout, origin: str) -> list[OriginFile]:
    """The bytes of every listed file (cache first); a file that cannot be had is counted by reason."""
    from tqdm import tqdm

    results = pool.map(lambda f: _fetch_or_error(api, cache, f), listed)
    bar = tqdm(results, total=len(listed), desc=origin, unit="file", disable=not sys.stderr.isatty())
    files: list[OriginFile] = []
    for remote, result in zip(listed, bar, strict=True):
        if isinstance(result, ContentError):
            log.warning("%s: %s not pulled: %s", origin, remote.path, result)
            checkout.skip(result.reason)
        else:
            files.append(OriginFile(remote.path, result, remote.executable))
    return files


def _fetch_or_error(api: ApiClient, cache: ContentCache, remote: RemoteFile) -> bytes | ContentError:
    try:
        return fetch_content(api, cache, remote)
    except ContentError as err:
        return err


def fetch_content(api: ApiClient, cache: ContentCache, remote: RemoteFile) -> bytes:
    """A file's bytes from the cache, else the API (verified, then cached); ContentError naming why not."""
    if remote.sha1:
        cached = cache.get(remote.sha1)
        if cached is not None:
            return cached
    try:
        data = api.raw(f"content/sha1_git:{remote.sha1_git}/raw/")
    except NotFound as err:
        raise ContentError(remote.sha1 or remote.sha1_git, MISSING) from err
    except ApiError as err:
        raise ContentError(remote.sha1 or remote.sha1_git, FAILED, str(err)) from err
    sha1 = sha1_hex(data)
    if (remote.sha1 and sha1 != remote.sha1) or sha1_git(data).hex() != remote.sha1_git:
        raise ContentError(remote.sha1 or remote.sha1_git, CORRUPT, "its bytes do not match the listing's checksums")
    cache.put(sha1, data)
    return data
