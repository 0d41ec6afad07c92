"""The opt-out list (The Stack v2 §1.6): users and repositories whose code is never pulled.

One entry a line; blank lines and `#` comments are ignored. `owner/repo` removes that repository,
a bare `owner` every repository of that user or organisation; names compare case-insensitively,
as GitHub's do. An origin's name is matched by its `owner/repo` part (a URL's last two segments).
"""

from __future__ import annotations

from pathlib import Path


def read_opt_out(path: Path) -> frozenset[str]:
    """The entries of an opt-out file, lower-cased."""
    entries = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip().strip("/").lower()
        if entry:
            entries.add(entry)
    return frozenset(entries)


def opted_out(origin_name: str, entries: frozenset[str]) -> bool:
    """Whether the origin `owner/repo` (or a URL ending in it) is on the list, by repository or by owner."""
    parts = [p for p in origin_name.lower().removesuffix(".git").split("/") if p]
    repo = "/".join(parts[-2:])
    owner = parts[-2] if len(parts) >= 2 else parts[-1] if parts else ""
    return repo in entries or owner in entries
