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
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

Kind = Literal["opened", "comment", "closed", "reopened"]
ISSUE_ACTIONS = frozenset({"opened", "closed", "reopened"})
# Edited and deleted comments exist in newer events; only a comment's creation adds a turn.
COMMENT_ACTIONS = frozenset({"created"})
# What a cut or corrupt gzip stream makes the reader raise, depending on where the cut falls.
TRUNCATION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


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


def _get(obj: Any, *keys: str) -> Any:
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
    login = _get(obj, *keys)
    if not isinstance(login, str) or not login:
        raise MissingField(".".join(keys))
    return login


def parse_event(raw: dict[str, Any]) -> tuple[str, int, str, Event] | str:
    """(repo, number, title, Event) for a kept event, else the counter key that says why it was skipped."""
    kind_of = raw.get("type")
    if kind_of not in ("IssuesEvent", "IssueCommentEvent"):
        return "other_type"
    try:
        payload = _get(raw, "payload")
        action = _get(payload, "action")
        if action not in (ISSUE_ACTIONS if kind_of == "IssuesEvent" else COMMENT_ACTIONS):
            return "other_action"
        issue = _get(payload, "issue")
        if "pull_request" in issue:
            return "pull_request"
        number, title = _get(issue, "number"), _get(issue, "title")
        repo, created_at, event_id = _get(raw, "repo", "name"), _get(raw, "created_at"), _get(raw, "id")
        if not isinstance(number, int) or isinstance(number, bool) or not isinstance(title, str):
            raise MissingField("payload.issue")
        if kind_of == "IssueCommentEvent":
            comment = _get(payload, "comment")
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
    return repo, number, title, event


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


def read_events(paths: Iterable[str | PathLike[str]]) -> tuple[list[Conversation], Counter[str]]:
    """Conversations (sorted by repo, number) from GHArchive files, and the counts of what was skipped."""
    counts: Counter[str] = Counter()
    grouped: dict[tuple[str, int], list[tuple[str, Event]]] = defaultdict(list)
    seen: set[str] = set()
    for raw in iter_raw_events(paths, counts):
        parsed = parse_event(raw)
        if isinstance(parsed, str):
            counts[parsed] += 1
            continue
        repo, number, title, event = parsed
        if event.id in seen:
            counts["duplicate"] += 1
            continue
        seen.add(event.id)
        counts["kept"] += 1
        grouped[(repo, number)].append((title, event))
    return [_conversation(repo, number, grouped[(repo, number)]) for repo, number in sorted(grouped)], counts


def _conversation(repo: str, number: int, items: list[tuple[str, Event]]) -> Conversation:
    """One conversation from its (title, event) pairs in any order."""
    items = sorted(items, key=lambda item: event_order(item[1]))
    opened = [title for title, event in items if event.kind == "opened"]
    title = (opened or [items[0][0]])[0]
    return Conversation(repo, number, title.strip(), tuple(event for _, event in items))
