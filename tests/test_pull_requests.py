"""Pull requests rendered as The Stack v2 did: the corpus PR token by token, every drop reason, the text rules,
the hunks, the per-PR seeded draws, and the changed files read through the content store."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from starbuild.issues.events import event_order
from starbuild.issues.pull_events import PullConversation, PullEvent, parse_pull_event
from starbuild.issues.pull_files import ChangedFile, ChangedFilesError, load_diffs, read_changed_files
from starbuild.issues.pull_render import (
    DroppedPull,
    FileDiff,
    PullRenderConfig,
    RenderedPull,
    SkipEvent,
    diff_hunks,
    keep_probability,
    remove_markdown_comments,
    render_pull,
    render_text,
)
from starbuild.swh.content_store import ContentStore
from starbuild.swh.storage import S3Options

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "corpus/gharchive/2024-01-01-1.json.gz"
CHANGED = ROOT / "corpus/gharchive/pr_changed_files.jsonl"
STORE = ROOT / "corpus/gharchive/content"
REPO = "example-org/tiny-parser"
B1, HA, HB = "b1" * 20, "a1" * 20, "a2" * 20
# No draw changes the text: whole base files, two context lines, no per-repository subsample.
FIXED = PullRenderConfig(full_base_probability=1.0, min_context_lines=2, max_context_lines=2,
                         subsample_per_repo=False)


def corpus_pulls() -> dict[int, PullConversation]:
    events: dict[int, list[PullEvent]] = {}
    with gzip.open(EVENTS) as lines:
        for line in lines:
            parsed = parse_pull_event(json.loads(line))
            assert not isinstance(parsed, str)
            events.setdefault(parsed[1], []).append(parsed[2])
    return {number: PullConversation(REPO, number, tuple(sorted(evs, key=event_order)))
            for number, evs in events.items()}


def corpus_diffs(counts: Counter[str] | None = None, heads: tuple[str, ...] = (HA, HB)) -> dict[str, list[FileDiff]]:
    pairs = [(REPO, B1, head) for head in heads]
    diffs = load_diffs(read_changed_files(CHANGED, pairs), ContentStore(str(STORE), None, S3Options()), 2,
                       Counter() if counts is None else counts)
    return {head: files for (_, _, head), files in diffs.items()}


BASE_CODE = '''"""A tiny JSON-like parser."""


def parse_array(tokens):
    items = []
    while tokens[0] != "]":
        items.append(parse_value(tokens))
        if tokens[0] == ",":
            tokens.pop(0)
    tokens.pop(0)
    return items'''
TRAILING_COMMA_HUNK = (
    '<pr_diff_hunk>@@ -8,4 +8,6 @@\n'
    '         if tokens[0] == ",":\n'
    '             tokens.pop(0)\n'
    '+            if tokens[0] == "]":\n'
    '+                break\n'
    '     tokens.pop(0)\n'
    '     return items'
)
EXPECTED = (
    "<pr>Title: Accept trailing commas in arrays\n"
    "username_0: Arrays like `[1, 2,]` failed with an IndexError. This skips a comma that closes the array."
    " could you review?\n\nFixes #12"
    "<pr_status>opened<repo_name>example-org/tiny-parser"
    "<pr_base><pr_file>tiny_parser/parse.py<pr_base_code>" + BASE_CODE
    + "<pr_diff><pr_file>tiny_parser/parse.py" + TRAILING_COMMA_HUNK
    + "<pr_review_comment><pr_event_id>7001<pr_in_reply_to_review_id>9001<pr_file>tiny_parser/parse.py"
    "<pr_diff_hunk_comment_line>6"
    '<pr_diff_hunk>@@ -6,6 +6,8 @@ def parse_array(tokens):\n'
    '     while tokens[0] != "]":\n'
    '         items.append(parse_value(tokens))\n'
    '         if tokens[0] == ",":\n'
    '             tokens.pop(0)\n'
    '+            if tokens[0] == "]":\n'
    '+                break'
    "<pr_comment>username_1: An empty array `[]` still works, but what about `[,]`? That should be an error."
    "<pr_review>username_1<pr_event_id>9001<pr_review_state>changes_requested"
    "<pr_comment>username_0: Good catch, username_1: `[,]` raises now, and items got a type hint."
    "<pr_event_id>8001<pr_status>created"
    "<pr_diff><pr_file>tiny_parser/parse.py"
    '<pr_diff_hunk>@@ -3,5 +3,5 @@\n'
    ' \n'
    ' def parse_array(tokens):\n'
    '-    items = []\n'
    '+    items: list = []\n'
    '     while tokens[0] != "]":\n'
    '         items.append(parse_value(tokens))'
    + TRAILING_COMMA_HUNK
    + "<pr_review>username_1: Looks good now, thanks!<pr_event_id>9002<pr_review_state>approved"
    "<pr>username_1<pr_status>closed<pr_is_merged>True"
)


def test_the_corpus_pull_request_renders_token_by_token() -> None:
    counts: Counter[str] = Counter()
    result = render_pull(corpus_pulls()[14], corpus_diffs(counts), 3, FIXED, seed=0)
    assert isinstance(result, RenderedPull)
    tokens = re.compile(r"(<[a-z_|]+>)")
    assert tokens.split(result.text) == tokens.split(EXPECTED)
    assert result.text == EXPECTED
    # No turn is skipped: open, review comment, review, comment, review, close.
    assert (result.events, result.base_files) == (6, 1)
    # The test file was added (no base) and the README's base blob is not in the store: neither is rendered.
    assert counts == Counter({"files": 2, "added_or_deleted": 1, "content_missing": 1})


def test_the_corpus_drops_name_their_reasons() -> None:
    pulls, diffs = corpus_pulls(), corpus_diffs(heads=("c3" * 20,))
    assert render_pull(pulls[15], diffs, 3, FIXED, seed=0) == DroppedPull("bad_open_event")  # "dependency"
    assert render_pull(pulls[16], diffs, 3, FIXED, seed=0) == DroppedPull("not_approved_or_merged")


def test_draws_are_seeded_per_pull_request_and_stay_in_their_ranges() -> None:
    conv, diffs = corpus_pulls()[14], corpus_diffs()
    texts = set()
    for seed in range(40):
        first = render_pull(conv, diffs, 1, PullRenderConfig(subsample_per_repo=False), seed)
        shuffled = replace(conv, events=tuple(random.Random(seed).sample(conv.events, len(conv.events))))
        shuffled = replace(shuffled, events=tuple(sorted(shuffled.events, key=event_order)))
        assert render_pull(shuffled, diffs, 1, PullRenderConfig(subsample_per_repo=False), seed) == first
        assert isinstance(first, RenderedPull)
        texts.add(first.text)
        for header, body in re.findall(r"<pr_diff_hunk>(@@ -\d+,\d+ \+\d+,\d+ @@)\n(.*?)(?=<|$)", first.text, re.S):
            old, new = map(int, re.findall(r",(\d+)", header))
            lines = body.split("\n")
            assert old == sum(not line.startswith("+") for line in lines)
            assert new == sum(not line.startswith("-") for line in lines)
    # Whole base files one time in five, and the padding and context differ between seeds.
    assert 5 < len(texts) <= 40


def hunk_lines(base: list[str], head: list[str], context: int) -> list[str]:
    return diff_hunks(base, head, context).split("<pr_diff_hunk>")[1:]


def test_hunks_join_changes_within_the_context_and_count_their_lines() -> None:
    base = [f"line {i}" for i in range(20)]
    head = base[:3] + ["new 3"] + base[4:6] + base[7:] + ["tail"]
    hunks = hunk_lines(base, head, 3)
    # Lines 3 and 6 change three lines apart: one hunk; the appended tail is its own.
    assert hunks[0] == ("@@ -1,10 +1,9 @@\n line 0\n line 1\n line 2\n-line 3\n+new 3\n line 4\n line 5\n-line 6\n"
                        " line 7\n line 8\n line 9")
    assert hunks[1] == "@@ -18,3 +17,4 @@\n line 17\n line 18\n line 19\n+tail"
    assert hunk_lines(base, base, 3) == []
    rng = random.Random(7)
    for _ in range(200):
        old = [str(rng.randint(0, 5)) for _ in range(rng.randint(0, 15))]
        new = [str(rng.randint(0, 5)) for _ in range(rng.randint(0, 15))]
        for hunk in hunk_lines(old, new, rng.randint(0, 4)):
            header, *body = hunk.split("\n")
            start_old, count_old, start_new, count_new = map(int, re.findall(r"\d+", header))
            assert count_old == sum(not line.startswith("+") for line in body)
            assert count_new == sum(not line.startswith("-") for line in body)
            # The lines a hunk shows are the base's and the head's own, where its header says.
            assert [line[1:] for line in body if not line.startswith("+")] == old[start_old - 1:][:count_old]
            assert [line[1:] for line in body if not line.startswith("-")] == new[start_new - 1:][:count_new]


def test_text_rules() -> None:
    cfg = PullRenderConfig()
    assert render_text("u", "Coverage report from Codecov: 91%", cfg) == "u: [OMITTED]CodeCov"
    assert remove_markdown_comments("keep <!-- hidden --> this<!-- open") == "keep  this open"
    long = "\n".join(f"line {i}" for i in range(100))
    rendered = render_text("u", long, cfg)
    assert rendered.split("\n")[60] == "[TRUNCATED]" and rendered.endswith("line 99")
    assert len(render_text("u", "x" * 5000, cfg)) == len("u: ") + 1000
    for text in ("too short", "Scanned by Qwiet: no findings in this change."):
        with pytest.raises(SkipEvent):
            render_text("u", text, cfg)
    assert keep_probability(1) == pytest.approx(0.8) and keep_probability(1000) == pytest.approx(0.1007)
    assert keep_probability(4000) == 0.025


def pr_event(action: str, *, head: str = HA, base: str = B1, merged: bool = False, title: str = "A title long enough",
             text: str | None = "A description long enough to keep.", minute: int = 0) -> PullEvent:
    return PullEvent("pr", action, "alice", text, f"2024-01-01T00:{minute:02d}:00Z", str(minute), title=title,
                     head_sha=head, base_sha=base, merged=merged)


def simple_diffs(base: str = "a\nb\nc\n", head: str = "a\nB\nc\n", path: str = "x.py",
                 language: str | None = "Python") -> dict[str, list[FileDiff]]:
    return {HA: [FileDiff(path, base, head, language)]}


@pytest.mark.parametrize(("events", "diffs", "cfg", "reason"), [
    ([pr_event("opened"), pr_event("closed", minute=1)], simple_diffs(), FIXED, "not_approved_or_merged"),
    ([pr_event("opened"), pr_event("closed", base="b2" * 20, merged=False, minute=1),
      pr_event("closed", base="b3" * 20, merged=True, minute=2)], simple_diffs(), FIXED, "base_changed"),
    ([pr_event("closed", merged=True)], simple_diffs(), FIXED, "no_open_event"),
    ([pr_event("opened"), pr_event("closed", merged=True, minute=1)], {}, FIXED, "no_diff"),
    ([pr_event("opened", head="ff" * 20), pr_event("closed", merged=True, minute=1)], simple_diffs(), FIXED,
     "no_initial_diff"),
    ([pr_event("opened", title="Release 2.0 of the parser"), pr_event("closed", merged=True, minute=1)],
     simple_diffs(), FIXED, "bad_open_event"),
    ([pr_event("opened", text=None), pr_event("closed", merged=True, minute=1)], simple_diffs(), FIXED,
     "bad_open_event"),
    ([pr_event("opened"), pr_event("closed", merged=True, minute=1)], simple_diffs(), replace(FIXED, min_chars=10_000),
     "too_short"),
    ([pr_event("opened"), pr_event("closed", merged=True, minute=1)], simple_diffs(), replace(FIXED, max_chars=100),
     "too_long"),
    ([pr_event("opened"), pr_event("closed", merged=True, minute=1)],
     simple_diffs(path="package-lock.json", language="JSON"),
     replace(FIXED, subsampled_languages={"JSON": {"keys": ["lock"], "keep_probability": 0.0}}), "no_base_files"),
])
def test_every_drop_reason(events: list[PullEvent], diffs: dict, cfg: PullRenderConfig, reason: str) -> None:
    conv = PullConversation(REPO, 1, tuple(events))
    assert render_pull(conv, diffs, 1, replace(cfg, min_chars=min(cfg.min_chars, 10)) if reason != "too_short"
                       else cfg, 0) == DroppedPull(reason)


def test_the_per_repository_subsample_keeps_its_share() -> None:
    conv = PullConversation(REPO, 0, (pr_event("opened"), pr_event("closed", merged=True, minute=1)))
    cfg = replace(PullRenderConfig(), min_chars=10)
    kept = sum(isinstance(render_pull(replace(conv, number=n), simple_diffs(), 500, cfg, 0), RenderedPull)
               for n in range(2000))
    # 500 PRs in the repository: kept with probability 0.8007 - 0.35 = 0.45.
    assert 0.41 < kept / 2000 < 0.49


def test_review_comment_hunks_count_from_the_first_base_line_shown_and_long_ones_are_omitted() -> None:
    base = "".join(f"line {i}\n" for i in range(60))
    head = base.replace("line 40\n", "LINE 40\n")
    comment = PullEvent("review_comment", "created", "bob", "Why the capitals on this line here?",
                        "2024-01-01T00:05:00Z", "5", head_sha=HA, base_sha=B1, object_id=1, path="x.py",
                        diff_hunk="@@ -38,5 +38,5 @@ def f():\n line 37", position=3)
    events = (pr_event("opened"), comment, pr_event("closed", merged=True, minute=9))
    cfg = replace(FIXED, full_base_probability=0.0, base_pad_lines=0, min_chars=10)
    result = render_pull(PullConversation(REPO, 1, events), {HA: [FileDiff("x.py", base, head)]}, 1, cfg, 0)
    assert isinstance(result, RenderedPull)
    # Only base line 40 is shown (start 40): the comment's hunk at 38 counts from there, never below 1.
    assert "<pr_base_code>line 40<pr_diff>" in result.text
    assert "<pr_diff_hunk>@@ -1,5 +1,5 @@ def f():\n line 37<pr_comment>" in result.text
    # A comment missing its id or its line is left out, not rendered with "None".
    for broken in (replace(comment, object_id=None), replace(comment, position=None)):
        result = render_pull(PullConversation(REPO, 1, (events[0], broken, events[2])),
                             {HA: [FileDiff("x.py", base, head)]}, 1, cfg, 0)
        assert "<pr_review_comment>" not in result.text and "None" not in result.text
    long = replace(comment, diff_hunk="@@ -1 +1 @@\n" + "x" * 10_001)
    result = render_pull(PullConversation(REPO, 1, (events[0], long, events[2])), {HA: [FileDiff("x.py", base, head)]},
                         1, cfg, 0)
    assert "<pr_diff_hunk_comment_line>3<pr_diff_hunk>[OMITTED]<pr_comment>" in result.text


def test_parse_skips_and_counts() -> None:
    assert parse_pull_event({"type": "WatchEvent"}) == "other_type"
    assert parse_pull_event({"type": "PullRequestEvent", "payload": {"action": "labeled"}}) == "other_action"
    assert parse_pull_event({"type": "IssueCommentEvent", "payload": {"action": "created", "issue": {"number": 1}}}) \
        == "not_pull_request"
    assert parse_pull_event({"type": "PullRequestEvent", "payload": {"action": "opened", "pull_request": {}}}) \
        == "missing_fields"


def test_changed_files_are_read_for_the_wanted_pairs_and_bad_contents_counted(tmp_path: Path) -> None:
    table = tmp_path / "files.jsonl"
    good, latin1 = b"print('hi')\n", "caf\xe9\n".encode("latin-1")
    store = tmp_path / "store"
    store.mkdir()
    for data in (good, latin1):
        (store / hashlib.sha1(data).hexdigest()).write_bytes(gzip.compress(data))
    (store / ("0" * 40)).write_bytes(b"not gzip")
    sha1 = {data: hashlib.sha1(data).hexdigest() for data in (good, latin1)}
    pair = {"repo_name": "o/r", "base_sha": "b", "head_sha": "h"}
    rows = [
        {**pair, "path": "a.py", "base_blob_id": sha1[good], "head_blob_id": sha1[good]},
        {**pair, "path": "b.py", "base_blob_id": sha1[latin1], "head_blob_id": sha1[good]},
        {**pair, "path": "c.py", "base_blob_id": "0" * 40, "head_blob_id": sha1[good]},
        {**pair, "head_sha": "other", "path": "d.py", "base_blob_id": None, "head_blob_id": None},
    ]
    table.write_text("".join(json.dumps(row) + "\n" for row in rows))
    changed = read_changed_files(table, [("o/r", "b", "h")])
    assert changed == {("o/r", "b", "h"): [ChangedFile("a.py", rows[0]["base_blob_id"], rows[0]["head_blob_id"]),
                                          ChangedFile("b.py", rows[1]["base_blob_id"], rows[1]["head_blob_id"]),
                                          ChangedFile("c.py", "0" * 40, rows[2]["head_blob_id"])]}
    counts: Counter[str] = Counter()
    diffs = load_diffs(changed, ContentStore(str(store), None, S3Options()), 2, counts)
    assert [d.path for d in diffs[("o/r", "b", "h")]] == ["a.py"]
    assert counts == Counter({"files": 1, "undecodable": 1, "content_corrupt": 1})
    with pytest.raises(ChangedFilesError, match=r"files.csv: name it \*.parquet or \*.jsonl"):
        read_changed_files(tmp_path / "files.csv", [("o/r", "b", "h")])
    (tmp_path / "bad.jsonl").write_text('{"repo_name": "o/r"}\n')
    with pytest.raises(ChangedFilesError, match="columns needed: repo_name, base_sha"):
        read_changed_files(tmp_path / "bad.jsonl", [("o/r", "b", "h")])
