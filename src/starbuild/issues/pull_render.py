"""StarCoder2's pull-request text (spec §6.3, The Stack v2's `pull_requests_and_issues/render.py`), one PR at a time.

A PR is kept only when it was approved (a review in state `approved`) or merged, never changed its base
(one base commit, two when the second is the merge's), has the changed files of the head commit it was
opened with, and survives the per-repository subsample: with n PRs in its repository it is kept with
probability 0.8007 - 0.0007·n up to n = 1,000 and 100/n above. Then its events are rendered in order:

- `<pr>` events: opened, edited and reopened write `Title: {title}\\n{user}: {text}`, others the user alone;
  then `<pr_status>{action}`, `<repo_name>{repo}` until the PR has been opened, `<pr_is_merged>True|False`
  on a close. The first open writes the base files, `<pr_base>` then `<pr_file>{path}<pr_base_code>{code}` per
  file, and the diff of its head commit.
- An event with a head commit not seen before (after the open) first writes that commit's diff: `<pr_diff>`,
  then per file `<pr_file>{path}` and its hunks, `<pr_diff_hunk>@@ -a,b +c,d @@\\n` and ` `/`-`/`+` lines.
- Reviews: `<pr_review>{user}: {text}` (or the user alone), `<pr_event_id>{id}<pr_review_state>{state}`.
- Review comments: `<pr_review_comment><pr_event_id>{id}`, `<pr_in_reply_to_review_id>` and
  `<pr_in_reply_to_comment_id>` when given, `<pr_file>{path}<pr_diff_hunk_comment_line>{line}`, the comment's
  diff hunk (`[OMITTED]` over 10,000 characters) after `<pr_diff_hunk>`, then `<pr_comment>{user}: {text}`.
- Comments: `<pr_comment>{user}: {text}<pr_event_id>{id}<pr_status>{action}`.
- A review or review comment without its id, or a review comment without its line, is left out.

Texts are stripped of email-reply text and `<!-- -->` comments, cut to their first 60 and last 20 lines
around `[TRUNCATED]` when over 80, and to 1,000 characters; a text under 20 characters drops its event
(a review's text is exempt), as does one naming `Qwiet`, and a text naming codecov is collapsed to
`{user}: [OMITTED]CodeCov`. A title under 10 characters or holding `depend` or `release` drops its event.
A failing opened event drops the whole PR. Base files are shown whole with probability 0.2, else the
changed lines padded by up to 32 random lines on each side; YAML and JSON base files whose path holds a
lockfile-like key, or that are over half the base's size, are kept with probability 0.1. Hunks carry
3 to 10 random context lines; hunk line numbers count from the first base line shown. Every draw comes
from a generator seeded by (seed, repo, number), so a PR renders the same whatever else is read with it.

Where The Stack v2's code does something else, starbuild says so: a hunk's trailing context is never one
line short at a file's end (the header always counts the lines shown); a review comment whose hunk starts
above the base lines shown keeps line 1 rather than a negative number; a PR without an opened or reopened
event in the files read is dropped (`no_open_event`) instead of rendering without its base.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher

from starbuild.issues.pull_events import PullConversation, PullEvent
from starbuild.issues.render import anonymiser, strip_email_reply, truncate_text
from starbuild.special_tokens import (
    PR_BASE,
    PR_BASE_CODE,
    PR_COMMENT,
    PR_DIFF,
    PR_DIFF_HUNK,
    PR_DIFF_HUNK_COMMENT_LINE,
    PR_EVENT,
    PR_EVENT_ID,
    PR_FILE,
    PR_IN_REPLY_TO_COMMENT_ID,
    PR_IN_REPLY_TO_REVIEW_ID,
    PR_IS_MERGED,
    PR_REVIEW,
    PR_REVIEW_COMMENT,
    PR_REVIEW_STATE,
    PR_STATUS,
    REPO_NAME,
)

REASONS = ("not_approved_or_merged", "base_changed", "no_open_event", "no_diff", "no_initial_diff", "subsampled",
           "bad_open_event", "no_base_files", "too_long", "too_short")
# The PR renderer's truncation line (the issue filters' is `[Truncated]`).
TRUNCATED = "[TRUNCATED]"
OMITTED = "[OMITTED]"
HUNK_HEADER = re.compile(r"@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


@dataclass
class SubsampledLanguage:
    """A base-file language kept only with `keep_probability` when its path holds a key or it dominates the base."""

    keys: list[str]
    keep_probability: float = 0.1
    max_base_share: float = 0.5


@dataclass
class PullRenderConfig:
    """The Stack v2's PR render parameters (`issues.pull_requests` in conf/issues/)."""

    min_title_chars: int = 10
    max_title_chars: int = 500
    title_keywords: list[str] = field(default_factory=lambda: ["depend", "release"])
    max_text_lines: int = 80
    tail_lines: int = 20
    min_text_chars: int = 20
    max_text_chars: int = 1000
    drop_text_keywords: list[str] = field(default_factory=lambda: ["Qwiet"])
    max_review_hunk_chars: int = 10_000
    full_base_probability: float = 0.2
    base_pad_lines: int = 32
    min_context_lines: int = 3
    max_context_lines: int = 10
    min_chars: int = 200
    max_chars: int = 100_000
    subsample_per_repo: bool = True
    subsampled_languages: dict[str, SubsampledLanguage] = field(default_factory=lambda: {
        "YAML": SubsampledLanguage(["pack", "lock", "yarn", "output", "swagger", "openapi"]),
        "JSON": SubsampledLanguage(["pack", "lock", "output"]),
    })

    def __post_init__(self) -> None:
        self.subsampled_languages = {name: spec if isinstance(spec, SubsampledLanguage) else SubsampledLanguage(**spec)
                                     for name, spec in self.subsampled_languages.items()}
        for key in ("min_title_chars", "max_title_chars", "max_text_lines", "tail_lines", "min_text_chars",
                    "max_text_chars", "max_review_hunk_chars", "base_pad_lines", "min_context_lines", "min_chars",
                    "max_chars"):
            if getattr(self, key) < 0:
                raise ValueError(f"pull_requests.{key} must be >= 0, got {getattr(self, key)}")
        if self.tail_lines > self.max_text_lines:
            raise ValueError(f"pull_requests.tail_lines ({self.tail_lines}) must not exceed max_text_lines")
        if self.max_context_lines < self.min_context_lines:
            raise ValueError("pull_requests.max_context_lines must be >= min_context_lines")
        probabilities = [("full_base_probability", self.full_base_probability)] + [
            (f"subsampled_languages.{name}.keep_probability", spec.keep_probability)
            for name, spec in self.subsampled_languages.items()]
        for key, value in probabilities:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"pull_requests.{key} must be within [0, 1], got {value}")


@dataclass(frozen=True)
class FileDiff:
    """One file a head commit changed: its path, base and head texts, and the base's go-enry language."""

    path: str
    base: str
    head: str
    language: str | None = None


@dataclass(frozen=True)
class RenderedPull:
    """A kept PR's training text, with its rendered event and base-file counts."""

    text: str
    events: int
    base_files: int


@dataclass(frozen=True)
class DroppedPull:
    """A dropped PR and why (one of REASONS)."""

    reason: str


class _Drop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkipEvent(Exception):
    """The event's text or title fails a rule: the event is left out (the PR too, for its opening)."""


@dataclass
class _BaseFile:
    path: str
    lines: list[str]
    language: str | None
    start: int
    end: int
    code: str = ""


def pull_rng(seed: int, repo: str, number: int) -> random.Random:
    """The PR's own generator: its draws never depend on which other PRs are read."""
    digest = hashlib.md5(f"{seed}\0{repo}\0{number}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def keep_probability(prs_in_repo: int) -> float:
    """The Stack v2's per-repository keep probability: 0.8 falling linearly to 0.1 at 1,000 PRs, then 100/n."""
    return 0.8007 - 0.0007 * prs_in_repo if prs_in_repo <= 1000 else 100 / prs_in_repo


def remove_markdown_comments(text: str) -> str:
    """The text without `<!-- … -->` comments; text after a stray `-->` is kept only past its last `-->`."""
    pieces = text.split("<!--")
    return "".join(piece[piece.rfind("-->") + 3:] if "-->" in piece else piece for piece in pieces)


def render_title(title: str | None, cfg: PullRenderConfig) -> str:
    """`Title: {title}\\n`; SkipEvent when it is too short or names a dependency update or a release."""
    text = truncate_text(title or "", max_lines=cfg.max_text_lines, tail_lines=cfg.tail_lines, marker=TRUNCATED)
    if len(text) < cfg.min_title_chars or any(key in (title or "").lower() for key in cfg.title_keywords):
        raise SkipEvent
    return f"Title: {text[: cfg.max_title_chars]}\n"


def render_text(user: str, text: str | None, cfg: PullRenderConfig, *, exempt_min: bool = False) -> str:
    """`{user}: {text}` after The Stack v2's text rules; SkipEvent when the text fails one."""
    text = strip_email_reply(user if text is None else text)
    if any(key in text for key in cfg.drop_text_keywords):
        raise SkipEvent
    if "codecov" in text.lower():
        return f"{user}: {OMITTED}CodeCov"
    text = truncate_text(remove_markdown_comments(text), max_lines=cfg.max_text_lines, tail_lines=cfg.tail_lines,
                         marker=TRUNCATED)
    if len(text) < cfg.min_text_chars and not exempt_min:
        raise SkipEvent
    text = text[: cfg.max_text_chars]
    return f"{user}: {text}" if text else user


Opcode = tuple[str, int, int, int, int]


def line_changes(base: Sequence[str], head: Sequence[str]) -> list[Opcode]:
    """difflib's non-equal opcodes of base → head lines.

    The common first and last lines are set aside before difflib looks (a PR changes a few lines of a long
    file, and difflib is quadratic in what it is given), which can only move an ambiguous change among equal
    lines, never make a hunk wrong.
    """
    prefix = 0
    while prefix < min(len(base), len(head)) and base[prefix] == head[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(base), len(head)) - prefix and base[-1 - suffix] == head[-1 - suffix]:
        suffix += 1
    matcher = SequenceMatcher(None, base[prefix:len(base) - suffix], head[prefix:len(head) - suffix], autojunk=False)
    return [(tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def changed_range(base: Sequence[str], head: Sequence[str]) -> tuple[int, int] | None:
    """The base lines [start, end) a head version changes, or None when they are equal."""
    changes = line_changes(base, head)
    return (changes[0][1], changes[-1][2]) if changes else None


def diff_hunks(base: Sequence[str], head: Sequence[str], context: int) -> str:
    """`<pr_diff_hunk>` hunks of base → head with `context` lines around changes; nearby changes share a hunk."""
    groups: list[list[Opcode]] = []
    for op in line_changes(base, head):
        if groups and op[1] - context <= groups[-1][-1][2]:
            groups[-1].append(op)
        else:
            groups.append([op])
    parts, previous_end = [], 0
    for index, group in enumerate(groups):
        first, last = group[0], group[-1]
        before = min(context, first[1] - previous_end)
        next_start = groups[index + 1][0][1] if index + 1 < len(groups) else len(base)
        after = min(context, next_start - last[2])
        start_base, end_base = first[1] - before, last[2] + after
        start_head, end_head = first[3] - before, last[4] + after
        lines = [" " + line for line in base[start_base:first[1]]]
        for position, (_, i1, i2, j1, j2) in enumerate(group):
            lines += ["-" + line for line in base[i1:i2]] + ["+" + line for line in head[j1:j2]]
            if position + 1 < len(group):
                lines += [" " + line for line in base[i2:group[position + 1][1]]]
        lines += [" " + line for line in base[last[2]:end_base]]
        header = f"@@ -{start_base + 1},{end_base - start_base} +{start_head + 1},{end_head - start_head} @@"
        parts.append(f"{PR_DIFF_HUNK}{header}\n" + "\n".join(lines))
        previous_end = last[2]
    return "".join(parts)


class _PullRenderer:
    """One PR's rendering state: the base files shown, the head commit last diffed, the text so far."""

    def __init__(self, conv: PullConversation, diffs: Mapping[str, Sequence[FileDiff]], cfg: PullRenderConfig,
                 rng: random.Random) -> None:
        self.conv, self.diffs, self.cfg, self.rng = conv, diffs, cfg, rng
        self.base: dict[str, _BaseFile] = {}
        self.head: str | None = None
        self.opened = False
        self.parts: list[str] = []
        self.length = 0
        self.events = 0

    def add(self, text: str, *, event: bool = False) -> None:
        self.parts.append(text)
        self.length += len(text)
        self.events += event and bool(text)
        if self.length > self.cfg.max_chars:
            raise _Drop("too_long")

    def render(self, events: Iterable[PullEvent]) -> RenderedPull:
        for event in events:
            if event.kind == "pr":
                self.pr_event(event)
            elif event.kind in ("review", "review_comment"):
                if self.opened:
                    self.diff_if_new_head(event)
                    self.add(self.review(event), event=True)
            else:
                self.add(self.comment(event), event=True)
        if self.length < self.cfg.min_chars:
            raise _Drop("too_short")
        return RenderedPull("".join(self.parts), self.events, len(self.base))

    def pr_event(self, event: PullEvent) -> None:
        if self.opened:
            self.diff_if_new_head(event)
        opening = not self.opened and event.action in ("opened", "reopened")
        try:
            text = PR_EVENT
            if event.action in ("opened", "edited", "reopened"):
                text += render_title(event.title, self.cfg) + render_text(event.user, event.text, self.cfg)
            else:
                text += event.user
        except SkipEvent:
            if event.action == "opened":
                raise _Drop("bad_open_event") from None
            return
        text += f"{PR_STATUS}{event.action}"
        if not self.opened:
            text += f"{REPO_NAME}{self.conv.repo}"
        if event.action == "closed":
            text += f"{PR_IS_MERGED}{event.merged}"
        self.add(text, event=True)
        if opening:
            self.opened = True
            self.add(self.base_files())
            self.diff_if_new_head(event)

    def comment(self, event: PullEvent) -> str:
        try:
            text = PR_COMMENT + render_text(event.user, event.text, self.cfg)
        except SkipEvent:
            return ""
        if event.object_id is not None:
            text += f"{PR_EVENT_ID}{event.object_id}"
        return text + f"{PR_STATUS}{event.action}"

    def review(self, event: PullEvent) -> str:
        # Without its id (or a comment's line) the event's tokens would carry "None": it is left out.
        if event.object_id is None or (event.kind == "review_comment" and event.position is None):
            return ""
        try:
            if event.kind == "review":
                who = render_text(event.user, event.text, self.cfg, exempt_min=True) if event.text else event.user
                return f"{PR_REVIEW}{who}{PR_EVENT_ID}{event.object_id}{PR_REVIEW_STATE}{event.review_state}"
            text = f"{PR_REVIEW_COMMENT}{PR_EVENT_ID}{event.object_id}"
            if event.review_id is not None:
                text += f"{PR_IN_REPLY_TO_REVIEW_ID}{event.review_id}"
            if event.in_reply_to is not None:
                text += f"{PR_IN_REPLY_TO_COMMENT_ID}{event.in_reply_to}"
            text += f"{PR_FILE}{event.path}{PR_DIFF_HUNK_COMMENT_LINE}{event.position}"
            return text + self.comment_hunk(event) + PR_COMMENT + render_text(event.user, event.text, self.cfg)
        except SkipEvent:
            return ""

    def comment_hunk(self, event: PullEvent) -> str:
        """The review comment's diff hunk, its line numbers counted from the first base line shown."""
        hunk = event.diff_hunk or ""
        shown = self.base.get(event.path or "")
        if shown is not None and shown.start:
            hunk = HUNK_HEADER.sub(lambda m: f"@@ -{max(int(m[1]) - shown.start, 1)}{m[2] or ''} "
                                             f"+{max(int(m[3]) - shown.start, 1)}{m[4] or ''} @@", hunk, count=1)
        return PR_DIFF_HUNK + (OMITTED if len(hunk) > self.cfg.max_review_hunk_chars else hunk)

    def base_files(self) -> str:
        """`<pr_base>` and each changed file's base code: whole, or its changed lines padded at random."""
        for head in self.diffs:
            for diff in self.diffs[head]:
                lines = diff.base.splitlines()
                span = changed_range(lines, diff.head.splitlines())
                if span is None:
                    continue
                shown = self.base.setdefault(diff.path, _BaseFile(diff.path, lines, diff.language, *span))
                shown.start, shown.end = min(shown.start, span[0]), max(shown.end, span[1])
        if sum(len("\n".join(f.lines[f.start:f.end])) for f in self.base.values()) + self.length > self.cfg.max_chars:
            raise _Drop("too_long")
        for shown in self.base.values():
            if self.rng.random() < self.cfg.full_base_probability:
                shown.start, shown.end = 0, len(shown.lines)
            else:
                shown.start = max(0, shown.start - self.rng.randint(0, self.cfg.base_pad_lines))
                shown.end = min(len(shown.lines), shown.end + self.rng.randint(0, self.cfg.base_pad_lines))
            shown.code = "\n".join(shown.lines[shown.start:shown.end])
        total = sum(len(shown.code) for shown in self.base.values())
        self.base = {path: shown for path, shown in self.base.items() if not self.subsampled_away(shown, total)}
        if not self.base:
            raise _Drop("no_base_files")
        return PR_BASE + "".join(f"{PR_FILE}{path}{PR_BASE_CODE}{shown.code}" for path, shown in self.base.items())

    def subsampled_away(self, shown: _BaseFile, total: int) -> bool:
        spec = self.cfg.subsampled_languages.get(shown.language or "")
        if spec is None:
            return False
        lockfile_like = any(key in shown.path for key in spec.keys)
        if lockfile_like or len(shown.code) / max(total, 1) > spec.max_base_share:
            return self.rng.random() > spec.keep_probability
        return False

    def diff_if_new_head(self, event: PullEvent) -> None:
        if event.head_sha is None or event.head_sha == self.head:
            return
        self.head = event.head_sha
        if event.head_sha in self.diffs:
            self.add(self.commit_diff(self.diffs[event.head_sha]))

    def commit_diff(self, files: Sequence[FileDiff]) -> str:
        """`<pr_diff>` and the hunks of every shown base file the head commit changed, from the first line shown."""
        context = self.rng.randint(self.cfg.min_context_lines, self.cfg.max_context_lines)
        parts = [PR_DIFF]
        for diff in files:
            shown = self.base.get(diff.path)
            if shown is None:
                continue
            head = diff.head.splitlines()[shown.start:]
            parts.append(f"{PR_FILE}{diff.path}" + diff_hunks(shown.lines[shown.start:], head, context))
        return "".join(parts)


def is_approved_or_merged(events: Iterable[PullEvent]) -> bool:
    """Whether a review approved the PR or a close merged it."""
    return any(e.kind == "review" and e.review_state == "approved" or e.kind == "pr" and e.merged for e in events)


def base_changes(events: Sequence[PullEvent]) -> int:
    """How many times the base commit changed (a merge's new base not counted)."""
    bases = {e.base_sha for e in events if e.base_sha is not None}
    return max(len(bases) - 1 - any(e.merged for e in events), 0)


def render_pull(conv: PullConversation, diffs: Mapping[str, Sequence[FileDiff]], prs_in_repo: int,
                cfg: PullRenderConfig, seed: int) -> RenderedPull | DroppedPull:
    """The PR's training text, or why it is dropped; `diffs` holds each head commit's changed files.

    The text carries no `<|endoftext|>`: the document assembler appends it.
    """
    events = conv.events
    if not is_approved_or_merged(events):
        return DroppedPull("not_approved_or_merged")
    if base_changes(events):
        return DroppedPull("base_changed")
    if not any(e.kind == "pr" and e.action in ("opened", "reopened") for e in events):
        return DroppedPull("no_open_event")
    if not any(diffs.values()):
        return DroppedPull("no_diff")
    first_head = next((e.head_sha for e in events if e.head_sha is not None), None)
    if first_head not in diffs:
        return DroppedPull("no_initial_diff")
    rng = pull_rng(seed, conv.repo, conv.number)
    if cfg.subsample_per_repo and rng.random() >= keep_probability(prs_in_repo):
        return DroppedPull("subsampled")
    names: dict[str, str] = {}
    for event in events:
        names.setdefault(event.user.lower(), f"username_{len(names)}")
    anonymous = anonymiser(names)
    events = tuple(replace(e, user=names[e.user.lower()], text=None if e.text is None else anonymous(e.text),
                           title=None if e.title is None else anonymous(e.title)) for e in events)
    try:
        return _PullRenderer(conv, diffs, cfg, rng).render(events)
    except _Drop as drop:
        return DroppedPull(drop.reason)
