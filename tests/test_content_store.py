"""The content store and its cache: gzip objects by sha1, checked, and a crash never leaves a bad cached copy."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from starbuild.swh.content_store import CORRUPT, MISSING, ContentCache, ContentError, ContentStore
from starbuild.swh.storage import S3Options


def put(store: Path, data: bytes) -> str:
    sha1 = hashlib.sha1(data).hexdigest()
    store.mkdir(parents=True, exist_ok=True)
    (store / sha1).write_bytes(gzip.compress(data))
    return sha1


def test_contents_are_fetched_checked_and_cached(tmp_path: Path) -> None:
    store_dir = tmp_path / "content"
    good = put(store_dir, b"print('hi')\n")
    lying = hashlib.sha1(b"something else").hexdigest()
    (store_dir / lying).write_bytes(gzip.compress(b"not what the name says"))
    not_gzip = put(store_dir, b"x = 1\n")
    (store_dir / not_gzip).write_bytes(b"x = 1\n")
    store = ContentStore(str(store_dir), ContentCache(tmp_path / "cache"), S3Options())
    found = store.fetch_many([good, lying, not_gzip, "0" * 40, good], workers=3)
    assert found[good] == b"print('hi')\n"
    assert {sha: err.reason for sha, err in found.items() if isinstance(err, ContentError)} == {
        lying: CORRUPT, not_gzip: CORRUPT, "0" * 40: MISSING}
    # Only what was checked is cached: the store can go, the good content is still there.
    (store_dir / good).unlink()
    assert store.fetch(good) == b"print('hi')\n"
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == [good]


def test_a_cache_file_cut_short_by_a_crash_is_fetched_again(tmp_path: Path) -> None:
    data = b"def f():\n    return 42\n" * 100
    sha1 = put(tmp_path / "content", data)
    cache = ContentCache(tmp_path / "cache")
    (tmp_path / "cache" / sha1[:2]).mkdir(parents=True)
    (tmp_path / "cache" / sha1[:2] / sha1).write_bytes(data[:37])  # a kill mid-write without the rename
    (tmp_path / "cache" / sha1[:2] / f"{sha1}.123.456.partial").write_bytes(data[:10])
    assert cache.get(sha1) is None
    assert ContentStore(str(tmp_path / "content"), cache, S3Options()).fetch(sha1) == data
    assert cache.get(sha1) == data


def test_a_store_that_is_neither_s3_nor_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither s3://bucket/prefix nor a local directory"):
        ContentStore("ftp://example.org/content", None, S3Options())
