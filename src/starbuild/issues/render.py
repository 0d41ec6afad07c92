"""StarCoder2's issue filters and text (spec §4.2, §6.3), applied to one conversation at a time.

Steps, in the order of BigCode's `filtering_issues.py`: email-reply text is stripped from every text,
long texts are truncated, bot events removed, usernames anonymised, the text rendered, then the
conversation is kept or dropped on its length and its users. Where the spec is silent:

- Email replies (`strip_email_reply`): the text is cut at the first line that starts an email reply's
  quote or footer: `On … wrote:` (the header may wrap onto a second line), a line containing
  `notifications@github.com`, a `m/d/y hh:mm AM|PM … wrote` header, `Reply to this email directly`,
  `You are receiving this because` or `-----Original Message-----`; dash-only lines left at the end go too.
  Outside ``` fences, quoted lines (`>` then a space or the line's end, up to 3 spaces before it) are
  removed, so doctest `>>>` lines stay; so are `Signed-off-by:` lines and lines of 20+ underscores.
- Truncation (`truncate_text`): a text over `max_lines=80` lines (the code's value; the paper says 100)
  keeps its first 60 and last 20 lines around a `[Truncated]` line, as BigCode's code writes it.
- Bots (`is_bot`): BigCode's lists, compared case-insensitively: a login containing a keyword
  (`[bot]`, `jenkins`, `travis`, …), ending with a suffix (`bot`, `-ci`, `-build`, …), or named in a list
  (`codecov-io`, `coveralls`, …). All of a bot's events go, its closes included. The `bot` suffix also
  catches human logins such as `talbot`: that is BigCode's rule, kept.
- Empty texts: a comment whose text is empty after stripping is removed; the opened event is kept even
  with an empty body, since it names the issue's author.
- Drop reasons, in this order: `no_comments` (no opened or comment event is left after bot removal),
  `too_short` (the rendered text is under `min_chars=200` characters), `single_user` (fewer than
  `min_users=2` distinct authors, and the rendered text is over `max_chars=7000` characters or there are
  over `max_events=10` events). Lengths are of the rendered text; events count opened, comment, closed
  and reopened events left after bot removal. The limits are inclusive as in BigCode's code.
- Anonymisation (`anonymise`): authors of the events left become `username_0`, `username_1`, … in order of
  first appearance. In the title and every text, a participant's `@login` mention is removed with the
  spaces before it (and the spaces after it at a line's start); then a participant's login written
  without `@` (e.g. in a URL or in code) becomes its pseudonym. Logins match case-insensitively and only
  as whole logins (not inside a longer word or login); mentions of non-participants stay unchanged.
- Layout: `<issue_start>Title: {title}\\n{user}: {text}` for the first opened or comment event, then
  `<issue_comment>{user}: {text}` for each later one. A closed event writes `<issue_closed>` where it
  happened; a close before the first text, or right after another close, writes nothing, and a reopen
  writes nothing (there is no token for it). No `<|endoftext|>`: the document assembler appends it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from starbuild.issues.events import Conversation, Event
from starbuild.special_tokens import ISSUE_CLOSED, ISSUE_COMMENT, ISSUE_START

REASONS = ("no_comments", "too_short", "single_user")
# The line a truncated text holds in place of its middle, as BigCode's issue code writes it.
TRUNCATED = "[Truncated]"

# BigCode's bot rules (bigcode-dataset preprocessing/utils/utils_issues.py).
BOT_KEYWORDS = ("[bot]", "botmanager", "bors-", "jenkins", "k8s-", "-test-", "travis")
BOT_SUFFIXES = (
    "-automaton", "-automation", "-benchmark", "-build", "-deployer", "-cloud", "bot", "-ci", "-linter",
    "-teamcity", "-test", "-testing", "-service-account",
)
BOT_AUTHORS = (
    "apache-hbase", "autorestci", "claassistant", "cmsbuild", "codecov-io", "codecov-commenter", "coveralls",
    "danger-public", "dnfclas", "msftclas", "pydocteur", "sparkqa", "karma-pr-reporter", "claassistantio",
    "probot-stale",
)

# Where an email reply's quoted part or footer begins; everything from there on is the mail client's.
EMAIL_REPLY_START = re.compile(
    r"^[ \t]*On\b[^\n]*(?:\n[^\n]*)?\bwrote:[ \t]*$"
    r"|^[^\n]*notifications@github\.com"
    r"|^[^\n]*\d+/\d+/\d+ \d{2}:\d{2} [AP]M[^\n]+wrote"
    r"|^[^\n]*Reply to this email directly"
    r"|^[ \t]*You are receiving this because"
    r"|^[ \t]*-{2,}[ \t]*Original Message[ \t]*-{2,}",
    re.MULTILINE,
)
# The "—" or "--" line mail clients put above a footer, left dangling once the footer is cut.
TRAILING_DASHES = re.compile(r"(?:\n[ \t]*(?:—|-{2,})[ \t]*)+\Z")
QUOTED_LINE = re.compile(r" {0,3}>(?: |$)")
NOISE_LINE = re.compile(r"[ \t]*(?:Signed-off-by:.*|_{20,})[ \t]*")
FENCE = re.compile(r" {0,3}(?:```|~~~)")
# A GitHub login: letters, digits and hyphens; this bounds a login so `bob` never matches `bob42`.
LOGIN_BEFORE = r"(?<![\w-])"
LOGIN_AFTER = r"(?![\w-])"


@dataclass(frozen=True)
class Rendered:
    """A kept conversation's training text."""

    text: str
    users: int
    events: int


@dataclass(frozen=True)
class Dropped:
    """A dropped conversation and why (one of REASONS)."""

    reason: str


def strip_email_reply(text: str) -> str:
    """The text without email-reply quotes and footers, quoted lines, sign-offs and rule lines."""
    match = EMAIL_REPLY_START.search(text)
    if match:
        text = TRAILING_DASHES.sub("", text[: match.start()].rstrip())
    kept, in_fence = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (QUOTED_LINE.match(line) or NOISE_LINE.fullmatch(line)):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def truncate_text(text: str, *, max_lines: int = 80, tail_lines: int = 20, marker: str = TRUNCATED) -> str:
    """A text over max_lines lines as its first max_lines - tail_lines and last tail_lines lines around `marker`."""
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    return "\n".join(lines[: max_lines - tail_lines]) + f"\n{marker}\n" + "\n".join(lines[-tail_lines:])


def is_bot(
    login: str,
    *,
    keywords: Iterable[str] = BOT_KEYWORDS,
    suffixes: Iterable[str] = BOT_SUFFIXES,
    authors: Iterable[str] = BOT_AUTHORS,
) -> bool:
    """Whether a login is a bot's by BigCode's keyword, suffix and list rules (case-insensitive)."""
    login = login.lower()
    return (
        any(keyword.lower() in login for keyword in keywords)
        or login.endswith(tuple(suffix.lower() for suffix in suffixes))
        or login in {author.lower() for author in authors}
    )


def pseudonyms(events: Iterable[Event]) -> dict[str, str]:
    """Each author's `username_i` keyed by lowercased login, numbered in order of first appearance."""
    names: dict[str, str] = {}
    for event in events:
        # GitHub logins are case-insensitive: `Bob42` and `bob42` are one user.
        names.setdefault(event.user.lower(), f"username_{len(names)}")
    return names


def anonymise(text: str, names: dict[str, str]) -> str:
    """The text with participants' @mentions removed and their bare logins replaced by pseudonyms.

    names maps lowercased logins to pseudonyms, as `pseudonyms` returns them.
    """
    return anonymiser(names)(text)


def anonymiser(names: dict[str, str]) -> Callable[[str], str]:
    """`anonymise` for one conversation's participants, its patterns compiled once for all its texts."""
    if not names:
        return lambda text: text

    @functools.cache
    def patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
        # Compiled on the first text that needs them: most conversations never mention a participant.
        # Longest first, so a login that is a prefix of another never wins the alternation.
        logins = "|".join(re.escape(login) for login in sorted(names, key=lambda login: (-len(login), login)))
        mention = rf"(?<![\w.+-])@(?:{logins}){LOGIN_AFTER}"
        return (re.compile(rf"^(?:{mention}[ \t]*)+", re.IGNORECASE | re.MULTILINE),
                re.compile(rf"[ \t]*{mention}", re.IGNORECASE),
                re.compile(rf"{LOGIN_BEFORE}(?:{logins}){LOGIN_AFTER}", re.IGNORECASE))

    def apply(text: str) -> str:
        # Every pattern needs a participant's login: most texts hold none, and the scans are the costly part.
        # Case folding covers what IGNORECASE matches (`ſ` for `s`, the Kelvin sign for `k`).
        folded = text.casefold()
        if not any(login in folded for login in names):
            return text
        leading, inline, bare = patterns()
        text = inline.sub("", leading.sub("", text))
        return bare.sub(lambda match: names[match.group(0).casefold()], text)

    return apply


def clean_events(events: Iterable[Event], *, max_lines: int = 80, tail_lines: int = 20) -> list[Event]:
    """Events without bots' and empty comments, texts stripped of email replies and truncated."""
    cleaned = []
    for event in events:
        if is_bot(event.user):
            continue
        text = truncate_text(strip_email_reply(event.text), max_lines=max_lines, tail_lines=tail_lines)
        if event.kind == "comment" and not text:
            continue
        cleaned.append(replace(event, text=text))
    return cleaned


def layout(title: str, events: Iterable[Event], names: dict[str, str]) -> str:
    """The §6.3 text of already anonymised events, without `<|endoftext|>`."""
    parts = [f"{ISSUE_START}Title: {title}\n"]
    started = closed = False
    for event in events:
        if event.kind in ("opened", "comment"):
            parts.append(f"{ISSUE_COMMENT if started else ''}{names[event.user.lower()]}: {event.text}")
            started, closed = True, False
        elif event.kind == "closed" and started and not closed:
            parts.append(ISSUE_CLOSED)
            closed = True
    return "".join(parts)


def render_issue(
    conv: Conversation,
    *,
    min_chars: int = 200,
    max_chars: int = 7000,
    max_events: int = 10,
    min_users: int = 2,
    max_lines: int = 80,
    tail_lines: int = 20,
) -> Rendered | Dropped:
    """The conversation's training text, or why it is dropped."""
    events = clean_events(conv.events, max_lines=max_lines, tail_lines=tail_lines)
    if not any(event.kind in ("opened", "comment") for event in events):
        return Dropped("no_comments")
    names = pseudonyms(events)
    anonymous = anonymiser(names)
    events = [replace(event, text=anonymous(event.text)) for event in events]
    text = layout(anonymous(conv.title), events, names)
    if len(text) < min_chars:
        return Dropped("too_short")
    if len(names) < min_users and (len(text) > max_chars or len(events) > max_events):
        return Dropped("single_user")
    return Rendered(text, users=len(names), events=len(events))
