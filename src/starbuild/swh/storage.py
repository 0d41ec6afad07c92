"""Where remote sources read from: a local directory or an S3 bucket (AWS, the public SWH bucket, MinIO).

pyarrow's filesystems do the reading, so a graph export's tables and the content store go through
one client; `s3://` is unsigned by default because the Software Heritage bucket is public.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: a custom endpoint (`http://127.0.0.1:9000`), unsigned requests, the region."""

    endpoint: str | None = None
    anonymous: bool = True
    region: str = "us-east-1"


def open_location(url: str, s3: S3Options) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of `url`: `s3://bucket/prefix` or a local directory."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return _s3(s3), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), (parsed.path if parsed.scheme else url).rstrip("/") or "/"
    raise ValueError(f"'{url}' is neither s3://bucket/prefix nor a local directory")


def local_or_url(location: str, repo_root: Path) -> str:
    """`location` with a relative local path made absolute against the repository root."""
    if "://" in location or Path(location).is_absolute():
        return location
    return str(repo_root / location)


def _s3(options: S3Options) -> pafs.S3FileSystem:
    kwargs: dict = {"anonymous": options.anonymous, "region": options.region}
    if options.endpoint:
        endpoint = urlparse(options.endpoint)
        kwargs["endpoint_override"] = endpoint.netloc or endpoint.path
        kwargs["scheme"] = endpoint.scheme or "https"
    return pafs.S3FileSystem(**kwargs)
