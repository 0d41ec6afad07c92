"""The `eval` config section: which model, and how each benchmark runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from starbuild.eval.fim_eval import FimEvalConfig
from starbuild.eval.humaneval import HumanEvalConfig
from starbuild.eval.perplexity import PerplexityConfig
from starbuild.eval.sandbox import SandboxLimits


@dataclass
class EvalConfig:
    """The `eval` config section (not frozen: Hydra merges conf/eval/ into it)."""

    # A Hugging Face causal LM directory to evaluate; null evaluates the DAG's export (models/hf).
    model: str | None = None
    # Where the model runs: cpu, or cuda when a GPU is there.
    device: str = "cpu"
    # Sequences per forward pass (windows when scoring, completions when generating).
    batch_size: int = 8
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
    humaneval: HumanEvalConfig = field(default_factory=HumanEvalConfig)
    fim: FimEvalConfig = field(default_factory=FimEvalConfig)
    sandbox: SandboxLimits = field(default_factory=lambda: SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=2048,
                                                                         processes=64, file_mb=16))

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
