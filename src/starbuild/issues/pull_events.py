"""GHArchive pull-request events read into one record per (repo, number), as The Stack v2's PR source kept them.

Kept, with what each carries (every kind: author `actor.login`, ISO time, GHArchive event id):

- `PullRequestEvent` opened, edited, reopened or closed: the PR's title and body, its head and base commits,
  and for a close whether it was merged.
- `PullRequestReviewEvent` (created or submitted): the review's id, state and body, the head and base commits.
- `PullRequestReviewCommentEvent` created: the comment's id and body, its file path, diff hunk and line in it
  (`original_position`), the review it belongs to and the comment it answers, the head and base commits.
- `IssueCommentEvent` created on an issue that is a pull request: the comment's id and body.

Everything else is counted as a skip and never raises: `other_type`, `other_action`, `not_pull_request`
(an issue comment on a plain issue), `missing_fields` and `duplicate` (an event id met before). The
author is the event's actor, as in The Stack v2's renderer; a null body is kept as None, which the
renderer treats unlike an empty one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from starbuild.issues.events import (
    MEMORY_LIMIT,
    Group,
    Grouping,
    MissingField,
    field_at,
    fill,
    is_utf8,
    iter_raw_events,
)

PullKind = Literal["pr", "comment", "review", "review_comment"]
PR_ACTIONS = frozenset({"opened", "edited", "reopened", "closed"})
# Newer events say `created`, events before 2020 `submitted`.
REVIEW_ACTIONS = frozenset({"created", "submitted"})
COMMENT_ACTIONS = frozenset({"created"})
PULL_TYPES = ("PullRequestEvent", "PullRequestReviewEvent", "PullRequestReviewCommentEvent", "IssueCommentEvent")


@dataclass(frozen=True)
class PullEvent:
    """One turn of a pull request; the fields a kind does not carry are None."""

    kind: PullKind
    action: str
    user: str
    text: str | None
    created_at: str
    id: str
    title: str | None = None
    head_sha: str | None = None
    base_sha: str | None = None
    merged: bool = False
    # The comment's or review's own id (`<pr_event_id>`).
    object_id: int | None = None
    review_state: str | None = None
    review_id: int | None = None
    in_reply_to: int | None = None
    path: str | None = None
    diff_hunk: str | None = None
    position: int | None = None


@dataclass(frozen=True)
class PullConversation:
    """One pull request's events in (created_at, id) order."""

    repo: str
    number: int
    events: tuple[PullEvent, ...]


def _optional_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _body(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _commits(pull: dict[str, Any]) -> tuple[str, str]:
    """The head and base commit ids of a `pull_request` object."""
    head, base = field_at(pull, "head", "sha"), field_at(pull, "base", "sha")
    if not isinstance(head, str) or not isinstance(base, str):
        raise MissingField("pull_request.head.sha")
    return head, base


def _pull_request_event(payload: dict[str, Any], common: dict[str, Any]) -> tuple[int, PullEvent]:
    pull = field_at(payload, "pull_request")
    head, base = _commits(pull)
    number = payload.get("number", pull.get("number"))
    title = pull.get("title")
    return number, PullEvent("pr", payload["action"], **common, text=_body(pull, "body"),
                             title=title if isinstance(title, str) else None, head_sha=head, base_sha=base,
                             merged=pull.get("merged") is True)


def _review_event(payload: dict[str, Any], common: dict[str, Any]) -> tuple[int, PullEvent]:
    pull, review = field_at(payload, "pull_request"), field_at(payload, "review")
    head, base = _commits(pull)
    state = field_at(review, "state")
    return field_at(pull, "number"), PullEvent(
        "review", payload["action"], **common, text=_body(review, "body"), head_sha=head, base_sha=base,
        object_id=_optional_int(review, "id"), review_state=str(state).lower())


def _review_comment_event(payload: dict[str, Any], common: dict[str, Any]) -> tuple[int, PullEvent]:
    pull, comment = field_at(payload, "pull_request"), field_at(payload, "comment")
    head, base = _commits(pull)
    position = _optional_int(comment, "original_position")
    return field_at(pull, "number"), PullEvent(
        "review_comment", payload["action"], **common, text=_body(comment, "body"), head_sha=head, base_sha=base,
        object_id=_optional_int(comment, "id"), review_id=_optional_int(comment, "pull_request_review_id"),
        in_reply_to=_optional_int(comment, "in_reply_to_id"), path=str(field_at(comment, "path")),
        diff_hunk=_body(comment, "diff_hunk") or "",
        position=position if position is not None else _optional_int(comment, "position"))


def _issue_comment_event(payload: dict[str, Any], common: dict[str, Any]) -> tuple[int, PullEvent]:
    issue, comment = field_at(payload, "issue"), field_at(payload, "comment")
    return field_at(issue, "number"), PullEvent("comment", payload["action"], **common,
                                                text=_body(comment, "body"), object_id=_optional_int(comment, "id"))


_PARSERS = {
    "PullRequestEvent": (PR_ACTIONS, _pull_request_event),
    "PullRequestReviewEvent": (REVIEW_ACTIONS, _review_event),
    "PullRequestReviewCommentEvent": (COMMENT_ACTIONS, _review_comment_event),
    "IssueCommentEvent": (COMMENT_ACTIONS, _issue_comment_event),
}


def parse_pull_event(raw: dict[str, Any]) -> tuple[str, int, PullEvent] | str:
    """(repo, number, PullEvent) for a kept event, else the counter key that says why it was skipped."""
    kind_of = raw.get("type")
    if kind_of not in _PARSERS:
        return "other_type"
    actions, parse = _PARSERS[kind_of]
    try:
        payload = field_at(raw, "payload")
        if field_at(payload, "action") not in actions:
            return "other_action"
        if kind_of == "IssueCommentEvent" and "pull_request" not in field_at(payload, "issue"):
            return "not_pull_request"
        repo, created_at, event_id = field_at(raw, "repo", "name"), field_at(raw, "created_at"), field_at(raw, "id")
        user = field_at(raw, "actor", "login")
        common = {"user": user, "created_at": created_at, "id": str(event_id)}
        number, event = parse(payload, common)
    except MissingField:
        return "missing_fields"
    if not all(isinstance(value, str) and value for value in (repo, created_at, user)):
        return "missing_fields"
    if not isinstance(number, int) or isinstance(number, bool):
        return "missing_fields"
    return repo, number, event


# What the grouping database holds of a kept PR event: its PR, its order, its id, the event as JSON.
PULL_EVENT_SCHEMA = pa.schema([("repo", pa.string()), ("number", pa.int64()), ("created_at", pa.string()),
                               ("id_order", pa.string()), ("id", pa.string()), ("event", pa.string())])


def pull_record(raw: dict[str, Any]) -> tuple[Any, ...] | str:
    """The PULL_EVENT_SCHEMA record of a kept PR event, else the counter key that says why it was skipped."""
    parsed = parse_pull_event(raw)
    if isinstance(parsed, str):
        return parsed
    repo, number, event = parsed
    # JSON's \\ud800 escapes decode to lone surrogates, which no UTF-8 table can hold; the event itself travels
    # as ASCII JSON, its escapes kept.
    if not is_utf8(repo, event.created_at, event.id):
        return "bad_json"
    return repo, number, event.created_at, event.id.zfill(32), event.id, json.dumps(dataclasses.asdict(event))


def pull_grouping(memory_limit: str = MEMORY_LIMIT, work: Path | None = None) -> Grouping:
    """The grouping of PR records: by (repo, number), in (time, id) order, each event id once."""
    return Grouping(PULL_EVENT_SCHEMA, key=("repo", "number"), order=("created_at", "id_order"), payload=("event",),
                    unique="id", memory_limit=memory_limit, work=work)


def pull_conversations_of(groups: Iterable[Group]) -> Iterator[PullConversation]:
    """The pull request of each PR grouping's group."""
    for group in groups:
        repo, number = group.key
        yield PullConversation(repo, number, tuple(PullEvent(**json.loads(event)) for (event,) in group.rows))


def iter_pull_conversations(paths: Iterable[str | PathLike[str]], counts: Counter[str], *,
                            memory_limit: str = MEMORY_LIMIT, work: Path | None = None) -> Iterator[PullConversation]:
    """Pull requests sorted by (repo, number), one at a time, their events in (created_at, id) order.

    Memory is bounded as for issues (events.Grouping); `counts` gets the skips, `kept` and `duplicate`.
    """
    with pull_grouping(memory_limit, work) as grouping:
        fill(iter_raw_events(paths, counts), [(pull_record, grouping, counts)])
        yield from pull_conversations_of(grouping.groups(counts))
