"""Beyond files: GitHub events rendered per second and notebooks converted per second, with the share of each step.

Issues: EVENT_FILES hourly files of generated GHArchive events (conversations of 1 to 12 events by up to
4 users among a few hundred, texts of real code and prose from this venv's Python sources, a bot now and
then, an email reply quote, a long comment), read with `issues.events.read_events` and rendered with
`issues.render.render_issue`; the render's steps are timed apart (email and truncation cleaning with bot
removal, pseudonyms and anonymisation, layout) over the same conversations.
Pull requests: PULLS generated PRs (opened, review comments, reviews on a second head commit, comments, a
merged close) over one to three files each, the base a real module of the standard library and the head
it with a few lines edited, written as GHArchive events, read and grouped with
`issues.pull_events.iter_pull_conversations`, rendered with `issues.pull_render.render_pull` (the
per-repository subsample off, so every PR is rendered); the diffs and the text rules are timed apart.
Notebooks: NOTEBOOKS notebooks built with nbformat from the same texts (markdown, code, stream and result
outputs), serialised, then read with `notebooks.convert.read_notebook` and converted to both formats.
Every step runs in this one process (the stages do the same per file or shard); best of REPEATS.
Run: `.venv/bin/python bench/bench_sources.py`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from starbuild.issues.events import read_events
from starbuild.issues.pull_events import iter_pull_conversations
from starbuild.issues.pull_render import FileDiff, PullRenderConfig, changed_range, diff_hunks, render_pull, render_text
from starbuild.issues.render import anonymiser, clean_events, layout, pseudonyms, render_issue
from starbuild.notebooks.convert import NotebookError, jupyter_script, jupyter_structured, read_notebook

EVENT_FILES = 4
CONVERSATIONS_PER_FILE = 1500
NOTEBOOKS = 1500
PULLS = 1500
REPEATS = 3
SEED = 7


def snippets() -> list[str]:
    """Pieces of real Python and prose: chunks of the standard library's and this venv's sources."""
    roots = [Path(json.__file__).parent.parent / name for name in ("json", "email", "asyncio", "logging")]
    pieces = []
    for root in roots:
        for path in sorted(root.glob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            pieces += [text[i:i + 600] for i in range(0, min(len(text), 6000), 600)]
    return pieces


def events_files(directory: Path, pieces: list[str], rng: random.Random) -> list[Path]:
    """EVENT_FILES gzip JSON-lines files of IssuesEvent and IssueCommentEvent, conversations spread over them."""
    users = [f"dev-{i:03d}" for i in range(300)] + ["ci-helper[bot]", "release-bot"]
    event_id, files = 0, []
    for f in range(EVENT_FILES):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
            for c in range(CONVERSATIONS_PER_FILE):
                repo, number = f"org-{rng.randrange(200)}/repo-{rng.randrange(50)}", f * CONVERSATIONS_PER_FILE + c
                people = rng.sample(users, rng.randint(1, 4))
                issue = {"number": number, "title": f"Issue {number}: " + rng.choice(pieces)[:60].replace("\n", " "),
                         "body": rng.choice(pieces), "user": {"login": people[0]}}
                for e in range(rng.randint(1, 12)):
                    event_id += 1
                    when = f"2024-01-01T{f:02d}:{e:02d}:{c % 60:02d}Z"
                    if e == 0:
                        kind, payload = "IssuesEvent", {"action": "opened", "issue": issue}
                    else:
                        body = rng.choice(pieces)
                        if rng.random() < 0.1:
                            quoted = rng.choice(pieces)[:80]
                            body += f"\n\nOn Mon, Jan 1, 2024 at 10:00 AM {people[0]} wrote:\n> {quoted}"
                        if rng.random() < 0.05:
                            body = "\n".join(rng.choice(pieces) for _ in range(12))
                        kind = "IssueCommentEvent"
                        payload = {"action": "created", "issue": issue,
                                   "comment": {"body": body, "user": {"login": rng.choice(people)}}}
                    event = {"id": str(event_id), "type": kind, "actor": {"login": rng.choice(people)},
                             "repo": {"name": repo}, "created_at": when, "payload": payload}
                    out.write((json.dumps(event) + "\n").encode())
        path = directory / f"2024-01-01-{f}.json.gz"
        path.write_bytes(buffer.getvalue())
        files.append(path)
    return files


def module_texts() -> list[str]:
    """The first 300 lines of each standard-library module of a few packages: the PRs' base files."""
    roots = [Path(json.__file__).parent.parent / name for name in ("email", "asyncio", "logging", "unittest")]
    return ["".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:300])
            for root in roots for path in sorted(root.glob("*.py"))]


def edited(text: str, rng: random.Random) -> str:
    """The text with two to six lines changed, inserted or deleted."""
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(2, 6)):
        at = rng.randrange(len(lines))
        change = rng.choice(("change", "insert", "delete"))
        if change == "change":
            lines[at] = lines[at].rstrip("\n") + "  # edited\n"
        elif change == "insert":
            lines.insert(at, "    pass  # inserted\n")
        elif len(lines) > 1:
            del lines[at]
    return "".join(lines)


def pull_events_file(path: Path, pieces: list[str], modules: list[str],
                     rng: random.Random) -> dict[tuple[str, int], dict[str, list[FileDiff]]]:
    """PULLS PRs as GHArchive events in one gzip file; each PR's files per head commit."""
    diffs: dict[tuple[str, int], dict[str, list[FileDiff]]] = {}
    event_id = 0
    with gzip.open(path, "wb") as out:
        for number in range(PULLS):
            repo, people = f"org-{rng.randrange(200)}/repo-{rng.randrange(50)}", rng.sample(range(300), 3)
            first, second = f"{number:020d}a", f"{number:020d}b"
            files = [(f"pkg/module_{i}.py", rng.choice(modules)) for i in range(rng.randint(1, 3))]
            heads = {first: [FileDiff(p, base, edited(base, rng), "Python") for p, base in files]}
            heads[second] = [FileDiff(d.path, d.base, edited(d.head, rng), "Python") for d in heads[first]]
            diffs[(repo, number)] = heads
            pull = {"number": number, "title": f"Fix {rng.choice(pieces)[:50]}", "body": rng.choice(pieces),
                    "merged": True, "base": {"sha": "base"}, "head": {"sha": first}}
            turns = [("PullRequestEvent", {"action": "opened", "number": number, "pull_request": pull})]
            for position in range(rng.randint(0, 3)):
                turns.append(("PullRequestReviewCommentEvent", {"action": "created", "pull_request": pull,
                              "comment": {"id": position, "path": files[0][0], "body": rng.choice(pieces)[:300],
                                          "diff_hunk": "@@ -1,3 +1,4 @@\n a\n b\n+c", "original_position": 3}}))
            head2 = {**pull, "head": {"sha": second}}
            turns += [("IssueCommentEvent", {"action": "created", "issue": {"number": number, "pull_request": {}},
                                             "comment": {"id": 1, "body": rng.choice(pieces)}}),
                      ("PullRequestReviewEvent", {"action": "created", "pull_request": head2,
                                                  "review": {"id": 2, "state": "approved", "body": "LGTM, thanks!"}}),
                      ("PullRequestEvent", {"action": "closed", "number": number, "pull_request": head2})]
            for minute, (kind, payload) in enumerate(turns):
                event_id += 1
                event = {"id": str(event_id), "type": kind, "actor": {"login": f"dev-{rng.choice(people):03d}"},
                         "repo": {"name": repo}, "created_at": f"2024-01-01T01:{minute:02d}:00Z", "payload": payload}
                out.write((json.dumps(event) + "\n").encode())
    return diffs


def bench_pulls(path: Path, diffs: dict[tuple[str, int], dict[str, list[FileDiff]]]) -> None:
    cfg = PullRenderConfig(subsample_per_repo=False)
    counts: Counter[str] = Counter()
    pulls = list(iter_pull_conversations([path], counts))
    read_s = best(lambda: list(iter_pull_conversations([path], Counter())))
    render_s = best(lambda: [render_pull(p, diffs[(p.repo, p.number)], 1, cfg, SEED) for p in pulls])
    pairs = [(d.base.splitlines(), d.head.splitlines()) for heads in diffs.values() for files in heads.values()
             for d in files]
    texts = [e.text for p in pulls for e in p.events if e.text]
    parts = {"read and group": read_s,
             "changed ranges and hunks": best(lambda: [(changed_range(b, h), diff_hunks(b, h, 5)) for b, h in pairs]),
             "text rules": best(lambda: [render_text("u", t, cfg, exempt_min=True) for t in texts])}
    kept = sum(not hasattr(render_pull(p, diffs[(p.repo, p.number)], 1, cfg, SEED), "reason") for p in pulls)
    events = counts["kept"]
    print(f"pull requests: {events:,} events in {len(pulls):,} PRs ({len(pairs):,} file versions), {kept:,} kept")
    print(f"  read + render: {read_s + render_s:.2f} s, {events / (read_s + render_s):,.0f} events/s, "
          f"{len(pulls) / (read_s + render_s):,.0f} PRs/s")
    print(f"  steps (of read + render {read_s + render_s:.2f} s): {shares(parts)}")


def notebook_texts(pieces: list[str], rng: random.Random) -> list[str]:
    """NOTEBOOKS serialised notebooks of 4 to 16 cells, Python and (one in ten) R."""
    texts = []
    for _ in range(NOTEBOOKS):
        nb = new_notebook()
        language = "R" if rng.random() < 0.1 else "python"
        nb.metadata["kernelspec"] = {"display_name": language, "language": language, "name": language.lower()}
        for _ in range(rng.randint(4, 16)):
            if rng.random() < 0.35:
                nb.cells.append(new_markdown_cell(rng.choice(pieces)[:300]))
            else:
                outputs = [new_output("stream", name="stdout", text=rng.choice(pieces)[:120])] \
                    if rng.random() < 0.5 else []
                nb.cells.append(new_code_cell(rng.choice(pieces), outputs=outputs))
        texts.append(nbformat.writes(nb))
    return texts


def best(fn: Callable[[], object]) -> float:
    """The best of REPEATS timings of `fn`, in seconds."""
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def shares(parts: dict[str, float]) -> str:
    total = sum(parts.values())
    return ", ".join(f"{name} {seconds:.2f} s ({seconds / total:.0%})" for name, seconds in parts.items())


def bench_issues(files: list[Path]) -> None:
    conversations, counts = read_events(files)
    events = counts["kept"]
    read_s = best(lambda: read_events(files))
    render_s = best(lambda: [render_issue(c) for c in conversations])
    cleaned = [clean_events(c.events) for c in conversations]
    names = [pseudonyms(e) for e in cleaned]

    def anonymise_all() -> list[list[str]]:
        return [[anonymous(e.text) for e in events] + [anonymous(c.title)]
                for c, events, anonymous in zip(conversations, cleaned, map(anonymiser, names), strict=True)]

    parts = {"read and group": read_s,
             "clean (email, truncation, bots)": best(lambda: [clean_events(c.events) for c in conversations]),
             "pseudonyms": best(lambda: [pseudonyms(e) for e in cleaned]),
             "anonymise": best(anonymise_all),
             "lay out": best(lambda: [layout(c.title, e, n) for c, e, n in zip(conversations, cleaned, names,
                                                                                strict=True)])}
    kept = sum(not hasattr(render_issue(c), "reason") for c in conversations)
    print(f"issues: {events:,} events in {len(conversations):,} conversations ({len(files)} files), {kept:,} kept")
    print(f"  read + render: {read_s + render_s:.2f} s, {events / (read_s + render_s):,.0f} events/s, "
          f"{len(conversations) / (read_s + render_s):,.0f} conversations/s")
    print(f"  steps: {shares(parts)}")


def bench_notebooks(texts: list[str]) -> None:
    size = sum(len(t.encode()) for t in texts)
    notebooks = [read_notebook(t) for t in texts]

    def convert(fn: Callable) -> None:
        for nb in notebooks:
            with contextlib.suppress(NotebookError):  # R notebooks have no structured form
                fn(nb)

    parts = {"read (nbformat)": best(lambda: [read_notebook(t) for t in texts]),
             "script (jupytext)": best(lambda: convert(jupyter_script)),
             "structured": best(lambda: convert(jupyter_structured))}
    total = sum(parts.values())
    print(f"notebooks: {len(texts):,} ({size / 1e6:.1f} MB): {total:.2f} s, {len(texts) / total:,.0f} notebooks/s "
          f"({size / 1e6 / total:.1f} MB/s) to both formats")
    print(f"  steps: {shares(parts)}")


def main() -> None:
    rng = random.Random(SEED)
    pieces = snippets()
    with tempfile.TemporaryDirectory() as tmp:
        bench_issues(events_files(Path(tmp), pieces, rng))
        pulls = Path(tmp) / "pulls.json.gz"
        bench_pulls(pulls, pull_events_file(pulls, pieces, module_texts(), rng))
    bench_notebooks(notebook_texts(pieces, rng))


if __name__ == "__main__":
    main()
