"""The issues stage: the embedded GHArchive events rendered, opted-out repositories and every drop counted."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.issues.stage import run_issues
from starbuild.special_tokens import (
    ISSUE_CLOSED,
    ISSUE_COMMENT,
    ISSUE_START,
    PR_DIFF,
    PR_EVENT,
    PR_IS_MERGED,
    PR_STATUS,
)
from tests.factories import stage_metrics, table_rows, with_overrides


def rows_of(ctx: StageContext) -> list[dict]:
    return table_rows(ctx.root / layout.ISSUES)


def test_the_embedded_events_become_one_issue_and_every_skip_is_counted(
    make_context: Callable[..., StageContext],
) -> None:
    ctx = make_context("issues")
    run_issues(ctx)
    [row] = rows_of(ctx)
    assert (row["repo_name"], row["number"], row["users"], row["events"]) == ("example-org/tiny-parser", 12, 2, 4)
    text = row["text"]
    assert text.startswith(f"{ISSUE_START}Title: Parser fails on trailing commas in arrays\nusername_0: Parsing")
    assert text.count(ISSUE_COMMENT) == 2 and ISSUE_CLOSED in text
    assert "quill-writes" not in text and "mapleleaf-dev" not in text and "[bot]" not in text
    assert text.endswith(f"{ISSUE_CLOSED}{ISSUE_COMMENT}username_0: Confirmed fixed on main, thanks username_1!")
    metrics = stage_metrics(ctx)
    assert metrics["events"] == {"kept": 6, "lines": 17, "other_type": 9, "pull_request": 2}
    assert metrics["conversations"] == 2 and metrics["issues"] == 1 and metrics["opted_out"] == 0
    assert metrics["dropped"] == {"no_comments": 0, "too_short": 1, "single_user": 0}
    assert metrics["bytes"] == len(text.encode("utf-8"))


def test_opted_out_repositories_and_thresholds_from_config(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
) -> None:
    ctx = make_context("issues")
    (ctx.root / "conf/source/opt_out.txt").write_text("# opted out\nexample-org/tiny-parser\n")
    run_issues(ctx)
    assert rows_of(ctx) == [] and stage_metrics(ctx)["opted_out"] == 1
    (ctx.root / "conf/source/opt_out.txt").write_text("")
    # Lower min_chars keeps the short single-user issue too.
    run_issues(make_context("issues", with_overrides(smoke_cfg, issues={"min_chars": 10})))
    assert [(r["repo_name"], r["number"]) for r in rows_of(ctx)] == [("example-org/color-tools", 3),
                                                                     ("example-org/tiny-parser", 12)]


def test_a_missing_event_file_and_bad_thresholds_fail_in_one_line(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
) -> None:
    with pytest.raises(StageError, match=r"issues.events: corpus/none does not exist; fix conf/issues/"):
        run_issues(make_context("issues", with_overrides(smoke_cfg, issues={"events": ["corpus/none"]})))
    with pytest.raises(StageError, match="tail_lines"):
        run_issues(make_context("issues", with_overrides(smoke_cfg, issues={"tail_lines": 100})))


def pr_rows(ctx: StageContext) -> list[dict]:
    return table_rows(ctx.root / layout.PULL_REQUESTS)


def test_the_embedded_pull_request_is_rendered_and_every_drop_counted(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
) -> None:
    ctx = make_context("issues")
    run_issues(ctx)
    [row] = pr_rows(ctx)
    assert (row["repo_name"], row["number"], row["events"], row["base_files"]) == ("example-org/tiny-parser", 14, 6, 1)
    text = row["text"]
    assert text.startswith(f"{PR_EVENT}Title: Accept trailing commas in arrays\nusername_0: Arrays like")
    assert text.endswith(f"{PR_EVENT}username_1{PR_STATUS}closed{PR_IS_MERGED}True")
    assert text.count(PR_DIFF) == 2 and "mapleleaf-dev" not in text and "quill-writes" not in text
    prs = stage_metrics(ctx)["pull_requests"]
    assert prs["conversations"] == 3 and prs["pull_requests"] == 1 and prs["opted_out"] == 0
    assert {reason: n for reason, n in prs["dropped"].items() if n} == {"bad_open_event": 1,
                                                                       "not_approved_or_merged": 1}
    assert prs["files"] == {"added_or_deleted": 1, "content_missing": 1, "files": 3}
    assert prs["events"] == {"kept": 9, "lines": 17, "not_pull_request": 3, "other_type": 5}
    assert prs["bytes"] == len(text.encode("utf-8"))
    # One PR per batch (and shard): the same rows.
    small = make_context("issues", with_overrides(smoke_cfg, issues={"pull_requests": {"batch_prs": 1}}))
    run_issues(small)
    assert pr_rows(small) == [row]


def test_pull_requests_of_opted_out_repositories_and_a_bad_changed_files_table(
    make_context: Callable[..., StageContext], smoke_cfg: DictConfig,
) -> None:
    ctx = make_context("issues")
    (ctx.root / "conf/source/opt_out.txt").write_text("example-org\n")
    run_issues(ctx)
    assert pr_rows(ctx) == [] and stage_metrics(ctx)["pull_requests"]["opted_out"] == 3
    (ctx.root / "conf/source/opt_out.txt").write_text("")
    (ctx.root / "files.csv").write_text("repo_name\n")
    with pytest.raises(StageError, match=r"issues.pull_requests.changed_files: .*files.csv: name it \*.parquet"):
        run_issues(make_context("issues", with_overrides(
            smoke_cfg, issues={"pull_requests": {"changed_files": "files.csv"}})))
    # No changed-files table: no PR has its diff.
    run_issues(make_context("issues", with_overrides(smoke_cfg, issues={"pull_requests": {"changed_files": ""}})))
    assert pr_rows(ctx) == [] and stage_metrics(ctx)["pull_requests"]["dropped"]["no_diff"] == 2
