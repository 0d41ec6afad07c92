"""GHArchive hourly files (gzip JSON lines) read into issue conversations, one per (repo, issue number).

Kept: `IssuesEvent` with action opened, closed or reopened, and `IssueCommentEvent` with action created,
when their issue is not a pull request (an issue carrying a `pull_request` key is a PR). Everything else
is skipped and counted; bad input never raises:

- `truncated_file`: a gzip stream cut short or corrupt; the events read before the cut are kept.
- `bad_json`: a line that is not a JSON object (or not UTF-8).
- `missing_fields`: a kept event type without a field the conversation needs.
- `pull_request`, `other_type`, `other_action`, `duplicate`: skipped, not bad (a duplicate is an event id
  seen before, e.g. the same hour file read twice).

Who an event belongs to: the issue's `user.login` for opened, the comment's `user.login` for a comment,
the event's `actor.login` for closed and reopened. An opened event's text is the issue body, a comment's
its body (a null body reads as ""); closed and reopened events carry no text.

Events are ordered by (created_at, id), ids compared as numbers, so input order never changes a
conversation. The title is the opened event's title, else the earliest event's (GHArchive copies the
issue's title into every event, as it was at that time).

Memory is bounded: kept events are appended in batches to a DuckDB database in a temporary directory
(`Grouping`, which pull-request events share) and read back sorted, one conversation at a time.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

Kind = Literal["opened", "comment", "closed", "reopened"]
ISSUE_ACTIONS = frozenset({"opened", "closed", "reopened"})
# Edited and deleted comments exist in newer events; only a comment's creation adds a turn.
COMMENT_ACTIONS = frozenset({"created"})
# What a cut or corrupt gzip stream makes the reader raise, depending on where the cut falls.
TRUNCATION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
# Rows appended to (and fetched from) the grouping database at a time: what one batch holds in memory.
BATCH_ROWS = 50_000
# DuckDB's default is 80% of the machine; grouping needs little, and spills what does not fit.
MEMORY_LIMIT = "1GB"
INT64_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True)
class Event:
    """One turn of an issue: its kind, author login, text, ISO timestamp and GHArchive event id."""

    kind: Kind
    user: str
    text: str
    created_at: str
    id: str


@dataclass(frozen=True)
class Conversation:
    """One issue's events in (created_at, id) order."""

    repo: str
    number: int
    title: str
    events: tuple[Event, ...]


class MissingField(Exception):
    """An event lacks a field a conversation needs."""


def field_at(obj: Any, *keys: str) -> Any:
    """obj[k0][k1]…, raising MissingField when a level is absent or not an object."""
    for key in keys:
        if not isinstance(obj, dict) or obj.get(key) is None:
            raise MissingField(".".join(keys))
        obj = obj[key]
    return obj


def _text(obj: dict[str, Any], key: str) -> str:
    """A body that may be null or absent, as a string."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _login(obj: Any, *keys: str) -> str:
    """A login, required to be a non-empty string."""
    login = field_at(obj, *keys)
    if not isinstance(login, str) or not login:
        raise MissingField(".".join(keys))
    return login


def parse_event(raw: dict[str, Any]) -> tuple[str, int, str, Event] | str:
    """(repo, number, title, Event) for a kept event, else the counter key that says why it was skipped."""
    kind_of = raw.get("type")
    if kind_of not in ("IssuesEvent", "IssueCommentEvent"):
        return "other_type"
    try:
        payload = field_at(raw, "payload")
        action = field_at(payload, "action")
        if action not in (ISSUE_ACTIONS if kind_of == "IssuesEvent" else COMMENT_ACTIONS):
            return "other_action"
        issue = field_at(payload, "issue")
        if "pull_request" in issue:
            return "pull_request"
        number, title = field_at(issue, "number"), field_at(issue, "title")
        repo, created_at, event_id = field_at(raw, "repo", "name"), field_at(raw, "created_at"), field_at(raw, "id")
        if not isinstance(number, int) or isinstance(number, bool) or number not in INT64_RANGE \
                or not isinstance(title, str):
            raise MissingField("payload.issue")
        if kind_of == "IssueCommentEvent":
            comment = field_at(payload, "comment")
            event = Event("comment", _login(comment, "user", "login"), _text(comment, "body"), "", "")
        elif action == "opened":
            event = Event("opened", _login(issue, "user", "login"), _text(issue, "body"), "", "")
        else:
            event = Event(action, _login(raw, "actor", "login"), "", "", "")
    except MissingField:
        return "missing_fields"
    if not isinstance(repo, str) or not isinstance(created_at, str):
        return "missing_fields"
    event = Event(event.kind, event.user, event.text, created_at, str(event_id))
    # JSON's \\ud800 escapes decode to lone surrogates, which no UTF-8 table (DuckDB, Parquet) can hold.
    if not is_utf8(repo, title, event.user, event.text, created_at, event.id):
        return "bad_json"
    return repo, number, title, event


def is_utf8(*texts: str) -> bool:
    """Whether every text encodes as UTF-8 (no lone surrogates)."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _open_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes; gzip when the name ends in .gz."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            yield from handle
    else:
        with path.open("rb") as handle:
            yield from handle


def iter_raw_events(paths: Iterable[str | PathLike[str]], counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """Every JSON object in the files, counting bad lines and truncated files instead of raising."""
    for path in paths:
        lines = _open_lines(Path(path))
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except TRUNCATION_ERRORS:
                counts["truncated_file"] += 1
                break
            if not line.strip():
                continue
            counts["lines"] += 1
            try:
                raw = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
                counts["bad_json"] += 1
                continue
            if not isinstance(raw, dict):
                counts["bad_json"] += 1
                continue
            yield raw


def event_order(event: Event) -> tuple[str, str]:
    """Sort key: timestamp, then id as a number (GHArchive ids are digit strings of varying length)."""
    return event.created_at, event.id.zfill(32)


# What the grouping database holds of a kept event: its issue, its order, its id and its content.
EVENT_SCHEMA = pa.schema([("repo", pa.string()), ("number", pa.int64()), ("created_at", pa.string()),
                          ("id_order", pa.string()), ("id", pa.string()), ("kind", pa.string()),
                          ("user", pa.string()), ("text", pa.string()), ("title", pa.string())])
EVENT_PAYLOAD = ("title", "kind", "user", "text", "created_at", "id")


def read_events(paths: Iterable[str | PathLike[str]]) -> tuple[list[Conversation], Counter[str]]:
    """Conversations (sorted by repo, number) from GHArchive files, and the counts of what was skipped.

    Holds every conversation in a list: for tests and small inputs; the stage streams `iter_conversations`.
    """
    counts: Counter[str] = Counter()
    return list(iter_conversations(paths, counts)), counts


def iter_conversations(paths: Iterable[str | PathLike[str]], counts: Counter[str], *,
                       memory_limit: str = MEMORY_LIMIT, work: Path | None = None) -> Iterator[Conversation]:
    """Conversations sorted by (repo, number), one at a time, from local GHArchive files read in the given order.

    `counts` gets what the reader skipped and, before the first conversation comes, `kept` and `duplicate`
    (an event id met before, the first by file order kept). Memory: one batch of events plus one conversation;
    the rest waits in a DuckDB database under `work` (the system's temporary directory when None).
    """
    with issue_grouping(memory_limit, work) as grouping:
        fill(iter_raw_events(paths, counts), [(issue_record, grouping, counts)])
        yield from conversations_of(grouping.groups(counts))


def issue_record(raw: dict[str, Any]) -> tuple[Any, ...] | str:
    """The EVENT_SCHEMA record of a kept issue event, else the counter key that says why it was skipped."""
    parsed = parse_event(raw)
    if isinstance(parsed, str):
        return parsed
    repo, number, title, event = parsed
    return repo, number, event.created_at, event_order(event)[1], event.id, event.kind, event.user, event.text, title


def issue_grouping(memory_limit: str = MEMORY_LIMIT, work: Path | None = None) -> Grouping:
    """The grouping of issue records: by (repo, number), in (time, id) order, each event id once."""
    return Grouping(EVENT_SCHEMA, key=("repo", "number"), order=("created_at", "id_order"), payload=EVENT_PAYLOAD,
                    unique="id", memory_limit=memory_limit, work=work)


def conversations_of(groups: Iterable[Group]) -> Iterator[Conversation]:
    """The conversation of each issue grouping's group."""
    for group in groups:
        repo, number = group.key
        yield _conversation(repo, number, [(title, Event(kind, user, text, created_at, event_id))
                                           for title, kind, user, text, created_at, event_id in group.rows])


# A record builder (the record, or why the event is skipped), the grouping it fills and the skip counter.
Sink = tuple[Callable[[dict[str, Any]], "tuple[Any, ...] | str"], "Grouping", Counter[str]]


def fill(raws: Iterable[dict[str, Any]], sinks: Sequence[Sink]) -> None:
    """Offer every raw event to every sink: its grouping gets the record, or its counter the skip reason."""
    for raw in raws:
        for to_record, grouping, counts in sinks:
            record = to_record(raw)
            if isinstance(record, str):
                counts[record] += 1
            else:
                grouping.add(record)


def _conversation(repo: str, number: int, items: list[tuple[str, Event]]) -> Conversation:
    """One conversation from its (title, event) pairs, already in event order."""
    opened = [title for title, event in items if event.kind == "opened"]
    title = (opened or [items[0][0]])[0]
    return Conversation(repo, number, title.strip(), tuple(event for _, event in items))


# --- Out-of-core grouping, shared by issue and pull-request events ---------------------------------------

SEQ = "__seq"  # the grouping table's own column: a record's position in the input


@dataclass(frozen=True)
class Group:
    """The rows of one key: `key` holds the key columns' values, each row the payload columns' in order."""

    key: tuple[Any, ...]
    rows: list[tuple[Any, ...]]


class Grouping:
    """Records grouped by `key`, in key order, with memory bounded by one batch plus one group.

    Contract:
    - Used as a context manager: entering makes a DuckDB database file in a fresh temporary directory under
      `work` (the system's temporary directory when None); leaving removes it. DuckDB uses at most
      `memory_limit` (a DuckDB size such as "1GB") and one thread, and spills the rest to that directory.
    - `add(record)`: a tuple (or list) of values in `schema`'s field order; records go into the database
      `batch_rows` at a time.
    - `groups(counts)`: once every record is added, the groups sorted by the `key` columns (strings by code
      point, integers as numbers); a group's rows are sorted by the `order` columns, ties in input order, and
      hold the `payload` columns in the order given. `counts`, when given, gets `kept` (records grouped) and
      `duplicate` (records dropped by `unique`), each only when non-zero, before the first group is yielded.
    - `unique`: when set, a record whose value there (never null) an earlier record had is dropped.
    Several groupings can be filled from one pass over the input (the issues stage fills the issues' and the
    pull requests' from one read of the event files).
    """

    def __init__(self, schema: pa.Schema, *, key: Sequence[str], order: Sequence[str], payload: Sequence[str],
                 unique: str | None = None, memory_limit: str = MEMORY_LIMIT, work: Path | None = None,
                 batch_rows: int = BATCH_ROWS) -> None:
        self.schema, self.key, self.order, self.payload, self.unique = schema, key, order, payload, unique
        self.memory_limit, self.work, self.batch_rows = memory_limit, work, batch_rows
        self._pending: list[Sequence[Any]] = []
        self._total = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Grouping:
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="starbuild-group-", dir=self.work)))
        config = {"memory_limit": self.memory_limit, "temp_directory": str(tmp / "spill"),
                  # Two threads sorting wide rows ran out of memory under a small limit where one spills.
                  "threads": 1, "preserve_insertion_order": False}
        self._con = self._stack.enter_context(duckdb.connect(str(tmp / "groups.duckdb"), config=config))
        full = self.schema.append(pa.field(SEQ, pa.int64()))
        self._con.register("empty", full.empty_table())
        self._con.execute("CREATE TABLE records AS SELECT * FROM empty")
        self._con.unregister("empty")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def add(self, record: Sequence[Any]) -> None:
        """Queue one record; a full batch goes into the database."""
        self._pending.append(record)
        if len(self._pending) == self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        """Append the queued records, numbered in input order, to the table `records`."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        columns = [pa.array(values, type=field.type)
                   for values, field in zip(zip(*batch, strict=True), self.schema, strict=True)]
        sequence = pa.array(range(self._total, self._total + len(batch)), pa.int64())
        table = pa.Table.from_arrays([*columns, sequence], schema=self.schema.append(pa.field(SEQ, pa.int64())))
        self._con.register("batch", table)
        self._con.execute("INSERT INTO records SELECT * FROM batch")
        self._con.unregister("batch")
        self._total += len(batch)

    def groups(self, counts: Counter[str] | None = None) -> Iterator[Group]:
        """Every group, in key order (see the class's contract)."""
        self._flush()
        duplicates = _drop_repeats(self._con, self.unique) if self.unique else 0
        if counts is not None:
            for name, value in (("kept", self._total - duplicates), ("duplicate", duplicates)):
                if value:
                    counts[name] += value
        yield from _sorted_groups(self._con, self.key, self.order, self.payload, self.batch_rows)


def _quoted(names: Iterable[str]) -> str:
    """Column names as a quoted SQL list."""
    return ", ".join('"' + name.replace('"', '""') + '"' for name in names)


def _drop_repeats(con: duckdb.DuckDBPyConnection, unique: str) -> int:
    """Delete every record whose `unique` value an earlier record had; how many went."""
    column = _quoted([unique])
    deleted = con.execute(f"DELETE FROM records WHERE {SEQ} NOT IN "
                          f"(SELECT min({SEQ}) FROM records GROUP BY {column})").fetchone()
    return int(deleted[0]) if deleted else 0


def _sorted_groups(con: duckdb.DuckDBPyConnection, key: Sequence[str], order: Sequence[str],
                   payload: Sequence[str], batch_rows: int) -> Iterator[Group]:
    """The table's records as groups: fetched sorted, `batch_rows` at a time, a group held until its key ends."""
    width = len(key)
    reader = con.execute(f"SELECT {_quoted([*key, *payload])} FROM records "
                         f"ORDER BY {_quoted([*key, *order, SEQ])}").to_arrow_reader(batch_rows)
    current: Group | None = None
    for batch in reader:
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            row_key = row[:width]
            if current is None or row_key != current.key:
                if current is not None:
                    yield current
                current = Group(row_key, [])
            current.rows.append(row[width:])
    if current is not None:
        yield current
