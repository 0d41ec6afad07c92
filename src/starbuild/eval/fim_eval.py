"""Single-line fill-in-the-middle exact match, SantaCoder-FIM style, with StarCoder2's PSM prompt."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from starbuild.eval.generation import SamplingConfig
from starbuild.eval.humaneval import canonical_completion, prompt_of
from starbuild.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX


@dataclass
class FimEvalConfig:
    """The `eval.fim` config section."""

    enabled: bool = True
    # Lines infilled from HumanEval's canonical solutions and from held-out validation files.
    humaneval_tasks: int = 100
    val_tasks: int = 100
    # Characters of prefix and of suffix kept around the middle line (the nearest ones).
    context_chars: int = 1000
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=32))
    # Generation stops at the first of these (and at end-of-text, as the SantaCoder-FIM task).
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if min(self.humaneval_tasks, self.val_tasks) < 0 or self.context_chars < 1:
            raise ValueError("humaneval_tasks and val_tasks must be ≥ 0 and context_chars ≥ 1")


@dataclass(frozen=True)
class FimTask:
    """One line to infill: the text before it, the line itself, the text after it."""

    source: str  # humaneval | val
    task_id: str
    prefix: str
    middle: str
    suffix: str

    def prompt(self) -> str:
        """PSM: `<fim_prefix>prefix<fim_suffix>suffix<fim_middle>`, as StarCoder2 was trained."""
        return f"{FIM_PREFIX}{self.prefix}{FIM_SUFFIX}{self.suffix}{FIM_MIDDLE}"


def line_tasks(source: str, task_id: str, text: str, start: int, context_chars: int) -> list[FimTask]:
    """A task for each non-blank line of `text` that begins at or after character `start`."""
    tasks = []
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True)):
        body = line.rstrip("\r\n")
        if offset >= start and body.strip():
            end = offset + len(body)
            tasks.append(FimTask(source, f"{task_id}#L{number + 1}", text[max(0, offset - context_chars) : offset],
                                 body, text[end : end + context_chars]))
        offset += len(line)
    return tasks


def has_line_task(text: str) -> bool:
    """Whether line_tasks finds a line to infill in `text` (a non-blank line)."""
    return any(line.rstrip("\r\n").strip() for line in text.splitlines(keepends=True))


def humaneval_fim_tasks(problems: Sequence[dict[str, Any]], count: int, seed: int, context_chars: int) -> list[FimTask]:
    """`count` lines of HumanEval's canonical solutions (each program: the stripped prompt and its solution),
    chosen by `seed` and kept in task order."""
    candidates = []
    for problem in problems:
        prompt = prompt_of(problem)
        candidates += line_tasks("humaneval", problem["task_id"], prompt + canonical_completion(problem),
                                 len(prompt), context_chars)
    return _choose(candidates, count, seed)


def val_fim_tasks(files: Sequence[tuple[str, str]], count: int, seed: int, context_chars: int) -> list[FimTask]:
    """One line of each held-out `(file_id, text)`, chosen by a hash of the file id and `seed`; then `count`
    of those files, chosen by `seed`."""
    candidates = []
    for file_id, text in files:
        lines = line_tasks("val", file_id, text, 0, context_chars)
        if lines:
            digest = hashlib.sha256(f"{seed}:{file_id}".encode()).digest()
            candidates.append(lines[int.from_bytes(digest[:8], "little") % len(lines)])
    return _choose(candidates, count, seed)


def fit_context(task: FimTask, count_tokens: Callable[[str], int], limit: int) -> tuple[FimTask, bool]:
    """`task` with prefix and suffix halved (keeping the text nearest the middle) until its prompt has at
    most `limit` tokens; and whether it had to be shortened. Cutting the prompt's start would lose
    `<fim_prefix>`."""
    shortened = False
    while count_tokens(task.prompt()) > limit and (task.prefix or task.suffix):
        task = replace(task, prefix=task.prefix[(len(task.prefix) + 1) // 2 :],
                       suffix=task.suffix[: len(task.suffix) // 2])
        shortened = True
    return task, shortened


def chosen_indices(candidates: int, count: int, seed: int) -> list[int]:
    """Which `count` of `candidates` (in order) `seed` picks: all of them when there are no more."""
    if candidates <= count:
        return list(range(candidates))
    return sorted(random.Random(seed).sample(range(candidates), count))


def _choose(candidates: list[FimTask], count: int, seed: int) -> list[FimTask]:
    return [candidates[i] for i in chosen_indices(len(candidates), count, seed)]


def exact_match(prediction: str, reference: str) -> bool:
    """The SantaCoder-FIM metric: equal once surrounding whitespace is stripped."""
    return prediction.strip() == reference.strip()


def score(tasks: Sequence[FimTask], predictions: Sequence[str]) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Exact match per source and overall; (metrics, one row per task)."""
    rows = [{"benchmark": f"fim/{task.source}", "task_id": task.task_id, "exact_match": exact_match(text, task.middle),
             "prediction": text, "reference": task.middle} for task, text in zip(tasks, predictions, strict=True)]
    metrics: dict[str, float | int] = {}
    for source in ("humaneval", "val"):
        hits = [row["exact_match"] for row in rows if row["benchmark"] == f"fim/{source}"]
        metrics[f"fim/{source}/tasks"] = len(hits)
        metrics[f"fim/{source}/exact_match"] = round(sum(hits) / len(hits), 6) if hits else 0.0
    return metrics, rows
