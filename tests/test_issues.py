"""GitHub issues (spec §4.2, §6.3): GHArchive events in, StarCoder2's filtered, anonymised issue text out."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from starbuild.issues.events import Conversation, Event, read_events
from starbuild.issues.render import (
    REASONS,
    Dropped,
    Rendered,
    anonymise,
    is_bot,
    pseudonyms,
    render_issue,
    strip_email_reply,
    truncate_text,
)
from starbuild.special_tokens import END_OF_TEXT, ISSUE_CLOSED, ISSUE_COMMENT, ISSUE_START

REPO = "octo-org/widgets"
TITLE = "Crash when parsing an empty config"
ISSUE_TOKENS = re.compile(f"({re.escape(ISSUE_START)}|{re.escape(ISSUE_COMMENT)}|{re.escape(ISSUE_CLOSED)})")


def gh_event(
    kind: str, user: str, seconds: int, event_id: int, body: str = "", *, number: int = 7, title: str = TITLE,
    pull_request: bool = False,
) -> dict[str, Any]:
    """One GHArchive event: kind is opened, closed, reopened (IssuesEvent) or comment (IssueCommentEvent)."""
    issue: dict[str, Any] = {"number": number, "title": title, "body": None, "user": {"login": "alice-dev"}}
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    payload: dict[str, Any] = {"issue": issue}
    if kind == "comment":
        payload.update(action="created", comment={"body": body, "user": {"login": user}})
    else:
        payload["action"] = kind
        if kind == "opened":
            issue.update(body=body, user={"login": user})
    return {
        "id": str(event_id),
        "type": "IssueCommentEvent" if kind == "comment" else "IssuesEvent",
        "actor": {"login": user},
        "repo": {"name": REPO},
        "created_at": f"2024-01-01T00:{seconds // 60:02d}:{seconds % 60:02d}Z",
        "payload": payload,
    }


def write_hour(path: Path, events: list[dict[str, Any]], extra_lines: tuple[bytes, ...] = ()) -> Path:
    """A GHArchive-style hourly file: gzip, one JSON event a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(event).encode() for event in events] + list(extra_lines)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    return path


OPENED_BODY = (
    "Loading an empty `widgets.toml` raises `KeyError`.\n\n"
    "```\n$ git clone https://github.com/alice-dev/widgets-fork\n$ widgets --config empty.toml\nKeyError: 'root'\n```"
)
BOB_REPLY = (
    "@alice-dev thanks, I can reproduce on main. cc @carol-ops who wrote the loader.\n\n"
    "On Mon, Jan 1, 2024 at 1:00 AM alice-dev <notifications@github.com> wrote:\n"
    "> Loading an empty `widgets.toml` raises `KeyError`.\n"
    "—\nReply to this email directly, view it on GitHub"
)
ALICE_THANKS = "Confirmed fixed in alice-dev/widgets-fork@3f2c1d0, thanks Bob42!"
CONVERSATION = [
    gh_event("opened", "alice-dev", 1, 101, OPENED_BODY),
    gh_event("comment", "dependabot[bot]", 2, 102, "Bumps tomli from 2.0.0 to 2.0.1."),
    gh_event("comment", "bob42", 3, 103, BOB_REPLY),
    gh_event("closed", "bob42", 4, 104),
    gh_event("comment", "alice-dev", 5, 105, ALICE_THANKS),
]
EXPECTED = (
    f"{ISSUE_START}Title: {TITLE}\n"
    "username_0: Loading an empty `widgets.toml` raises `KeyError`.\n\n"
    "```\n$ git clone https://github.com/username_0/widgets-fork\n$ widgets --config empty.toml\nKeyError: 'root'\n```"
    f"{ISSUE_COMMENT}username_1: thanks, I can reproduce on main. cc @carol-ops who wrote the loader."
    f"{ISSUE_CLOSED}"
    f"{ISSUE_COMMENT}username_0: Confirmed fixed in username_0/widgets-fork@3f2c1d0, thanks username_1!"
)


def conversation(events: list[dict[str, Any]], tmp_path: Path) -> Conversation:
    """The one conversation read back from an hourly file holding the events."""
    conversations, _ = read_events([write_hour(tmp_path / "gharchive" / "2024-01-01-0.json.gz", events)])
    assert len(conversations) == 1
    return conversations[0]


def rendered_text(result: Rendered | Dropped) -> str:
    """The text of a kept conversation, failing the test with the reason of a dropped one."""
    assert isinstance(result, Rendered), result
    return result.text


def test_fixture_conversation_renders_to_the_hand_written_text(tmp_path: Path) -> None:
    conv = conversation(CONVERSATION, tmp_path)
    assert (conv.repo, conv.number, conv.title) == (REPO, 7, TITLE)
    assert [event.kind for event in conv.events] == ["opened", "comment", "comment", "closed", "comment"]
    result = render_issue(conv)
    text = rendered_text(result)
    assert ISSUE_TOKENS.split(text) == ISSUE_TOKENS.split(EXPECTED)  # token by token first, for a readable diff
    assert text == EXPECTED
    assert not text.endswith(END_OF_TEXT)
    assert (result.users, result.events) == (2, 4)  # the bot's comment is gone


def test_anonymisation_is_consistent_across_comments_title_and_code(tmp_path: Path) -> None:
    events = [
        gh_event("opened", "Bob42", 1, 1, "See `pip install git+https://github.com/bob42/widgets`; bob4 is not me.",
                 title="Ask bob42 about the fork"),
        gh_event("comment", "alice-dev", 2, 2, "@BOB42 the fork at github.com/Bob42/widgets works; ping @dave-x too."),
        gh_event("comment", "bob42", 3, 3, "alice-dev: `git remote add alice-dev git@github.com:alice-dev/w.git`\n"
                 + "x" * 120),
    ]
    text = rendered_text(render_issue(conversation(events, tmp_path)))
    assert text == (
        f"{ISSUE_START}Title: Ask username_0 about the fork\n"
        "username_0: See `pip install git+https://github.com/username_0/widgets`; bob4 is not me."
        f"{ISSUE_COMMENT}username_1: the fork at github.com/username_0/widgets works; ping @dave-x too."
        f"{ISSUE_COMMENT}username_0: username_1: `git remote add username_1 git@github.com:username_1/w.git`\n"
        + "x" * 120
    )
    assert "bob42" not in text.lower() and "alice-dev" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@alice-dev @bob42 looks good", "looks good"),
        ("thanks @alice-dev, and @bob42!", "thanks, and!"),
        ("cc @alice-dev\nnext line", "cc\nnext line"),
        ("mail alice-dev@example.com", "mail username_0@example.com"),
        ("@alice-devs and @bob4 stay", "@alice-devs and @bob4 stay"),
    ],
)
def test_mentions_of_participants_are_removed(text: str, expected: str) -> None:
    assert anonymise(text, {"alice-dev": "username_0", "bob42": "username_1"}) == expected


def test_logins_differing_in_case_are_one_participant() -> None:
    events = [Event("opened", "Bob42", "hi", "t0", "1"), Event("comment", "bob42", "yo", "t1", "2")]
    assert pseudonyms(events) == {"bob42": "username_0"}


@pytest.mark.parametrize(
    ("login", "bot"),
    [
        ("dependabot[bot]", True), ("renovate-bot", True), ("mergify", False), ("codecov-io", True),
        ("Travis-Builder", True), ("org-ci", True), ("alice-dev", False), ("bob42", False), ("k8s-ci-robot", True),
    ],
)
def test_bot_logins(login: str, bot: bool) -> None:
    assert is_bot(login) is bot


def test_bot_comment_removed_and_bot_only_issue_dropped(tmp_path: Path) -> None:
    text = rendered_text(render_issue(conversation(CONVERSATION, tmp_path)))
    assert "tomli" not in text and "dependabot" not in text
    bots_only = [
        gh_event("opened", "renovate-bot", 1, 1, "Update dependency tomli to v2.0.1 " * 10),
        gh_event("comment", "codecov-io", 2, 2, "Coverage 91% " * 20),
    ]
    assert render_issue(conversation(bots_only, tmp_path / "bots")) == Dropped("no_comments")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BOB_REPLY, "@alice-dev thanks, I can reproduce on main. cc @carol-ops who wrote the loader."),
        ("Fixed.\n\nOn Tue, Jan 2, 2024 at 9:15 AM Alice Dev <\nnotifications@github.com> wrote:\n> > old", "Fixed."),
        ("Agreed.\n\nSent from my phone\n\n-----Original Message-----\nFrom: x", "Agreed.\n\nSent from my phone"),
        ("> Does it work?\n\nYes.\nSigned-off-by: Bob <bob@example.com>\n" + "_" * 24, "Yes."),
        ("```\n> not a quote\n```\n>>> 1 + 1\n2", "```\n> not a quote\n```\n>>> 1 + 1\n2"),
        ("On Linux it works.", "On Linux it works."),
    ],
)
def test_email_reply_text_removed(text: str, expected: str) -> None:
    assert strip_email_reply(text) == expected


def test_long_comment_truncated_to_first_60_and_last_20_lines(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(100)]
    truncated = truncate_text("\n".join(lines))
    assert truncated.split("\n") == lines[:60] + ["[Truncated]"] + lines[-20:]
    assert truncate_text("\n".join(lines[:80])) == "\n".join(lines[:80])  # 80 lines is not over 80
    events = CONVERSATION[:3] + [gh_event("comment", "carol-ops", 4, 104, "\n".join(lines))]
    assert rendered_text(render_issue(conversation(events, tmp_path))).endswith(
        f"{ISSUE_COMMENT}username_2: " + "\n".join(lines[:60] + ["[Truncated]"] + lines[-20:])
    )


def single_user(n_comments: int, comment: str) -> list[dict[str, Any]]:
    """An issue by alice-dev with her own comments only."""
    opened = gh_event("opened", "alice-dev", 0, 1, "It breaks.")
    return [opened] + [gh_event("comment", "alice-dev", i + 1, i + 2, comment) for i in range(n_comments)]


def test_each_drop_reason(tmp_path: Path) -> None:
    assert set(REASONS) == {"no_comments", "too_short", "single_user"}
    results = {
        "short": render_issue(conversation(single_user(0, "") + [gh_event("comment", "bob42", 2, 2, "+1")], tmp_path)),
        "too_long": render_issue(conversation(single_user(2, "y" * 3600), tmp_path / "b")),
        "too_many_events": render_issue(conversation(single_user(10, "still broken " * 3), tmp_path / "c")),
        "small_single_user": render_issue(conversation(single_user(9, "still broken " * 3), tmp_path / "d")),
        "long_two_users": render_issue(
            conversation(single_user(2, "y" * 3600) + [gh_event("comment", "bob42", 9, 99, "ok")], tmp_path / "e")
        ),
    }
    assert results["short"] == Dropped("too_short")
    assert results["too_long"] == Dropped("single_user")  # over 7,000 characters
    assert results["too_many_events"] == Dropped("single_user")  # 11 events
    assert isinstance(results["small_single_user"], Rendered)  # 10 events, under 7,000 characters
    assert isinstance(results["long_two_users"], Rendered)
    assert all(result.reason in REASONS for result in results.values() if isinstance(result, Dropped))


def test_thresholds_are_keyword_arguments(tmp_path: Path) -> None:
    conv = conversation(CONVERSATION, tmp_path)
    assert render_issue(conv, min_chars=len(EXPECTED) + 1) == Dropped("too_short")
    assert isinstance(render_issue(conv, min_chars=len(EXPECTED)), Rendered)
    assert render_issue(conv, min_users=3, max_events=3) == Dropped("single_user")


def test_out_of_order_events_give_the_same_rendering(tmp_path: Path) -> None:
    expected = render_issue(conversation(CONVERSATION, tmp_path))
    shuffled = CONVERSATION[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != CONVERSATION
    # Split over two hourly files read in reverse, with a same-second tie broken by id (9 < 10 as numbers).
    first = write_hour(tmp_path / "x" / "2024-01-01-0.json.gz", shuffled[:2])
    second = write_hour(tmp_path / "x" / "2024-01-01-1.json.gz", shuffled[2:])
    conversations, counts = read_events([second, first])
    assert render_issue(conversations[0]) == expected
    assert counts["kept"] == len(CONVERSATION)
    tie = [gh_event("comment", "bob42", 5, 10, "second"), gh_event("comment", "carol-ops", 5, 9, "first")]
    conv = conversation(CONVERSATION[:1] + tie, tmp_path / "tie")
    assert [event.text for event in conv.events[1:]] == ["first", "second"]


def test_truncated_gzip_and_bad_lines_are_counted_and_the_rest_read(tmp_path: Path) -> None:
    good = write_hour(tmp_path / "good.json.gz", CONVERSATION, extra_lines=(b"{not json", b"\xff\xfe", b"[1, 2]"))
    missing = dict(CONVERSATION[2], payload={"action": "created", "issue": {"number": 8, "title": "t"}})
    noisy = write_hour(tmp_path / "noisy.json.gz", [missing, {"type": "PushEvent", "payload": {}}])
    # Many distinct events so the cut falls well inside the compressed stream.
    many = [gh_event("comment", f"user-{i}", i % 3600, 1000 + i, f"comment {i} " + "z" * (i % 97), number=9)
            for i in range(3000)]
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(write_hour(tmp_path / "full.json.gz", many).read_bytes()[:-2000])
    conversations, counts = read_events([good, noisy, cut])
    assert counts["bad_json"] == 3
    assert counts["missing_fields"] == 1
    assert counts["other_type"] == 1
    assert counts["truncated_file"] == 1
    by_number = {conv.number: conv for conv in conversations}
    assert render_issue(by_number[7]) == Rendered(EXPECTED, users=2, events=4)
    assert 0 < len(by_number[9].events) < len(many)  # what came before the cut is kept


def test_pull_request_events_are_skipped(tmp_path: Path) -> None:
    pr = [gh_event("opened", "alice-dev", 1, 201, "A PR", number=8, pull_request=True),
          gh_event("comment", "bob42", 2, 202, "LGTM", number=8, pull_request=True)]
    conversations, counts = read_events([write_hour(tmp_path / "h.json.gz", CONVERSATION + pr)])
    assert [conv.number for conv in conversations] == [7]
    assert counts["pull_request"] == 2


def test_event_fields(tmp_path: Path) -> None:
    conv = conversation(CONVERSATION, tmp_path)
    assert conv.events[3] == Event("closed", "bob42", "", "2024-01-01T00:00:04Z", "104")
    with pytest.raises(AttributeError):
        conv.title = "x"  # type: ignore[misc]


def test_anonymise_matches_logins_in_any_case_even_unicode_folds() -> None:
    from starbuild.issues.render import anonymise

    names = {"sam-dev": "username_0", "kit": "username_1"}
    # `ſ` and the Kelvin sign fold to `s` and `k`, as IGNORECASE matches them; the prefilter must let them through.
    assert anonymise("thanks \u017fam-dev and \u212aIT", names) == "thanks username_0 and username_1"
    assert anonymise("no participant here", names) == "no participant here"
