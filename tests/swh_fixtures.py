"""Small git repositories and what Software Heritage would hold for them: a graph export and a content store.

Everything here is derived from the git objects with dulwich, hashlib and swh.model, never from starbuild's
code, so the sources under test are checked against an independent reading of the same repositories.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.orc as orc

MAX_FILE_BYTES = 2000
MIT = ("MIT License\n\nCopyright (c) 2024 Test\n\nPermission is hereby granted, free of charge, to any person "
       "obtaining a copy\nof this software and associated documentation files (the \"Software\"), to deal\n"
       "in the Software without restriction, including without limitation the rights\nto use, copy, modify, "
       "merge, publish, distribute, sublicense, and/or sell\ncopies of the Software, and to permit persons to "
       "whom the Software is\nfurnished to do so, subject to the following conditions:\n\nThe above copyright "
       "notice and this permission notice shall be included in all\ncopies or substantial portions of the "
       "Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\nIMPLIED, "
       "INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\nFITNESS FOR A PARTICULAR PURPOSE AND "
       "NONINFRINGEMENT. IN NO EVENT SHALL THE\nAUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR "
       "OTHER\nLIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\nOUT OF OR IN "
       "CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\nSOFTWARE.\n")
GPL3 = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n..."
LATIN1 = "/* café, naïve */\nint x;\n"

ALPHA_URL = "https://github.com/test/alpha"
BETA_URL = "https://gitlab.com/test/beta"
# Beta's revision again, reached through a release on refs/heads/master (no HEAD, no main).
RELEASED_URL = "https://github.com/test/beta-released"
# Visited, but never fully.
PARTIAL_URL = "https://github.com/test/partial"
VISIT_DATE = datetime(2024, 3, 1, 12, 0, 0)


def git(cwd: Path, *args: str, date: str = "2023-05-04T10:00:00+02:00") -> str:
    """Run git in `cwd` with a fixed identity and dates (author and committer differ); return stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "c",
           "GIT_COMMITTER_EMAIL": "c@example.org", "GIT_AUTHOR_DATE": date,
           "GIT_COMMITTER_DATE": "2023-06-01T08:30:00+00:00", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, env=env)
    return done.stdout.decode().strip()


def make_alpha(root: Path) -> Path:
    """Nested dirs, an executable, a symlink, a submodule, two licenses, odd encodings and names; main + dev."""
    files = {
        "README.md": "# alpha\n",
        "LICENSE": MIT,
        "src/app/main.py": "import sys\n\nprint(sys.argv)\n",
        "src/app/util/helpers.py": "def helper():\n    return 42\n",
        "src/app/util/same.py": "def helper():\n    return 42\n",  # the same bytes twice: fetched once
        "vendor/gpl/LICENSE": GPL3,
        "vendor/gpl/lib.c": "int lib(void) { return 1; }\n",
        "bin/run.sh": "#!/bin/sh\necho hi\n",
        "big.txt": "x" * (MAX_FILE_BYTES + 500),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "bin/run.sh").chmod(0o755)
    (root / "latin1.c").write_bytes(LATIN1.encode("latin-1"))
    (root / "data.bin").write_bytes(bytes(range(256)))
    (root / os.fsdecode(b"caf\xe9.txt")).write_text("a name that is not UTF-8\n")
    (root / "link").symlink_to("src/app/main.py")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    # A submodule: a gitlink entry naming a commit of another repository.
    git(root, "update-index", "--add", "--cacheinfo", f"160000,{'ab' * 20},ext/sub")
    git(root, "commit", "-qm", "first")
    git(root, "tag", "-a", "v1", "-m", "v1")
    git(root, "checkout", "-q", "-b", "dev")
    (root / "dev_only.py").write_text("on dev only\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "dev", date="2023-07-01T00:00:00+00:00")
    git(root, "checkout", "-q", "main")
    return root


def make_beta(root: Path) -> Path:
    """A plain repository whose default branch is master."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/__init__.py").write_text("")
    (root / "pkg/core.py").write_text("VALUE = 1\n")
    (root / "COPYING").write_text(MIT)
    git(root, "init", "-q", "-b", "master")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "beta", date="2022-01-02T03:04:05-05:00")
    return root


@dataclass
class Export:
    """The rows of every export table, and the contents by sha1."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    contents: dict[str, bytes] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)  # url → revision its default branch names


_GIT_TYPE = {b"commit": "revision", b"tag": "release", b"tree": "directory", b"blob": "content"}


def utc_naive(seconds: int) -> datetime:
    """A git timestamp as SWH's exporter writes it: naive UTC."""
    return datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)


def snapshot_of(repo: Any) -> tuple[str, dict[bytes, tuple[str, bytes]]]:
    """The SWH snapshot of a dulwich repository (swh.model computes its id) and its branches."""
    from swh.model.model import Snapshot

    branches: dict[bytes, tuple[str, bytes]] = {}
    for name, sha in repo.refs.as_dict().items():
        branches[name] = (_GIT_TYPE[repo[sha].type_name], bytes.fromhex(sha.decode()))
    for name, target in repo.refs.get_symrefs().items():
        branches[name] = ("alias", target)
    snapshot = Snapshot.from_dict({"branches": {n: {"target": t, "target_type": k} for n, (k, t) in branches.items()}})
    return snapshot.id.hex(), branches


def add_objects(export: Export, repo: Any) -> None:
    """Every object of the repository as export rows (revision, release, directory_entry, content)."""
    for sha in sorted(repo.object_store):
        obj = repo.object_store[sha]
        oid = sha.decode()
        if obj.type_name == b"commit":
            export.tables["revision"].append({
                "id": oid, "message": obj.message, "author": hashlib.sha256(obj.author).digest(),
                "date": utc_naive(obj.author_time), "date_offset": obj.author_timezone // 60,
                "committer": hashlib.sha256(obj.committer).digest(), "committer_date": utc_naive(obj.commit_time),
                "committer_offset": obj.commit_timezone // 60, "directory": obj.tree.decode(), "type": "git"})
        elif obj.type_name == b"tag":
            kind, target = obj.object
            export.tables["release"].append({
                "id": oid, "name": obj.name, "message": obj.message, "target": target.decode(),
                "target_type": _GIT_TYPE[kind.type_name], "date": utc_naive(obj.tag_time)})
        elif obj.type_name == b"tree":
            for entry in obj.iteritems():
                kind = "dir" if entry.mode == 0o040000 else "rev" if entry.mode == 0o160000 else "file"
                export.tables["directory_entry"].append({
                    "directory_id": oid, "name": entry.path, "type": kind, "target": entry.sha.decode(),
                    "perms": entry.mode})
        elif obj.type_name == b"blob":
            add_content(export, obj.data)


def add_content(export: Export, data: bytes) -> None:
    """A content row (every hash SWH keeps) and its bytes."""
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 in export.contents:
        return
    export.contents[sha1] = data
    export.tables["content"].append({
        "sha1": sha1, "sha1_git": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(), "blake2s256": hashlib.blake2s(data).hexdigest(),
        "length": len(data), "status": "visible"})


def add_origin(export: Export, url: str, visits: list[tuple[int, datetime, str, str | None]]) -> None:
    """An origin and its visits' statuses (visit, date, status, snapshot)."""
    export.tables["origin"].append({"id": hashlib.sha1(url.encode()).hexdigest(), "url": url})
    for visit, date, status, snapshot in visits:
        export.tables["origin_visit_status"].append({
            "origin": url, "visit": visit, "date": date, "status": status, "snapshot": snapshot, "type": "git"})


def add_snapshot(export: Export, snapshot: str, branches: dict[bytes, tuple[str, bytes]]) -> None:
    """Snapshot branch rows as SWH's exporter writes them: every target hex-encoded, an alias's name too."""
    export.tables["snapshot"].append({"id": snapshot})
    for name, (kind, target) in sorted(branches.items()):
        export.tables["snapshot_branch"].append({
            "snapshot_id": snapshot, "name": name, "target": target.hex(), "target_type": kind})


def build_export(alpha: Path, beta: Path) -> Export:
    """The export of alpha and beta (plus a released-branch origin and a partial one)."""
    from dulwich.repo import Repo

    export = Export()
    for url, path in ((ALPHA_URL, alpha), (BETA_URL, beta)):
        repo = Repo(str(path))
        snapshot, branches = snapshot_of(repo)
        add_snapshot(export, snapshot, branches)
        add_objects(export, repo)
        export.heads[url] = repo.head().decode()
        # An older full visit whose snapshot the export lacks, and a later partial one: neither is chosen.
        add_origin(export, url, [(1, datetime(2023, 1, 1), "full", "0" * 40), (2, VISIT_DATE, "full", snapshot),
                                 (3, datetime(2024, 6, 1), "partial", None)])
    release = "f" * 40
    export.tables["release"].append({"id": release, "name": b"v9", "message": b"", "target": export.heads[BETA_URL],
                                     "target_type": "revision", "date": VISIT_DATE})
    add_snapshot(export, "e" * 40, {b"refs/heads/master": ("release", bytes.fromhex(release))})
    add_origin(export, RELEASED_URL, [(1, VISIT_DATE, "full", "e" * 40)])
    add_origin(export, PARTIAL_URL, [(1, VISIT_DATE, "partial", None)])
    return export


SCHEMAS = {
    "origin": pa.schema([("id", pa.string()), ("url", pa.string())]),
    "origin_visit_status": pa.schema([("origin", pa.string()), ("visit", pa.int64()), ("date", pa.timestamp("us")),
                                      ("status", pa.string()), ("snapshot", pa.string()), ("type", pa.string())]),
    "snapshot": pa.schema([("id", pa.string())]),
    "snapshot_branch": pa.schema([("snapshot_id", pa.string()), ("name", pa.binary()), ("target", pa.string()),
                                  ("target_type", pa.string())]),
    "release": pa.schema([("id", pa.string()), ("name", pa.binary()), ("message", pa.binary()),
                          ("target", pa.string()), ("target_type", pa.string()), ("date", pa.timestamp("us"))]),
    "revision": pa.schema([("id", pa.string()), ("message", pa.binary()), ("author", pa.binary()),
                           ("date", pa.timestamp("us")), ("date_offset", pa.int16()), ("committer", pa.binary()),
                           ("committer_date", pa.timestamp("us")), ("committer_offset", pa.int16()),
                           ("directory", pa.string()), ("type", pa.string())]),
    "directory_entry": pa.schema([("directory_id", pa.string()), ("name", pa.binary()), ("type", pa.string()),
                                  ("target", pa.string()), ("perms", pa.int32())]),
    "content": pa.schema([("sha1", pa.string()), ("sha1_git", pa.string()), ("sha256", pa.string()),
                          ("blake2s256", pa.string()), ("length", pa.int64()), ("status", pa.string())]),
}


def write_export(export: Export, graph: Path, store: Path) -> None:
    """The tables as ORC (zstd, as SWH writes them; big tables in two files) and the contents gzipped by sha1."""
    for table, schema in SCHEMAS.items():
        rows = export.tables[table]
        (graph / table).mkdir(parents=True)
        parts = [rows[: len(rows) // 2], rows[len(rows) // 2:]] if len(rows) > 8 else [rows]
        for i, part in enumerate(parts):
            orc.write_table(pa.Table.from_pylist(part, schema=schema), graph / table / f"part-{i}.orc",
                            compression="zstd")
    store.mkdir(parents=True)
    for sha1, data in export.contents.items():
        (store / sha1).write_bytes(gzip.compress(data, mtime=0))
