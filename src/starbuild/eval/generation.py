"""Batched completion of text prompts with any HF causal LM: KV cache, greedy or sampled, stop strings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList


@dataclass
class SamplingConfig:
    """How completions are drawn (a section of each generating benchmark's config)."""

    # Tokens generated at most per completion.
    max_new_tokens: int
    # 0 decodes greedily; above 0 samples at this temperature with nucleus `top_p`.
    temperature: float = 0.0
    top_p: float = 0.95
    # Completions per prompt (pass@k needs n ≥ k; greedy needs 1).
    n_samples: int = 1

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be ≥ 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature={self.temperature} must be ≥ 0 and top_p={self.top_p} in (0, 1]")
        if self.n_samples < 1 or (self.temperature == 0 and self.n_samples > 1):
            raise ValueError(f"n_samples={self.n_samples} must be ≥ 1, and 1 when temperature is 0 (greedy)")


class StopOnStrings(StoppingCriteria):
    """Stops each row once its generated text contains any of `stops`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :])
        return torch.tensor([any(stop in text for stop in self.stops) for text in texts], device=input_ids.device)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string (the whole text when none occurs)."""
    end = min((index for stop in stops if (index := text.find(stop)) != -1), default=len(text))
    return text[:end]


@dataclass
class Generated:
    """Completions of one prompt and whether its prompt had to lose tokens at the left to fit."""

    completions: list[str]
    truncated: bool


def complete(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    stops: Sequence[str],
    batch_size: int,
    seed: int,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[Generated]:
    """`sampling.n_samples` completions of every prompt, each cut at its first stop string.

    Prompts are encoded without special tokens added and batched with left padding, longest
    first; a prompt longer than the model's context less `max_new_tokens` keeps its last tokens.
    Sampling is seeded per batch, so the completions depend only on the prompts, the settings
    and `seed`.
    """
    device = next(model.parameters()).device
    limit = model.config.max_position_embeddings - sampling.max_new_tokens
    if limit < 1:
        raise ValueError(f"max_new_tokens={sampling.max_new_tokens} leaves no room for a prompt in the model's "
                         f"{model.config.max_position_embeddings} positions")
    # A row the model ends early is padded after its end-of-text, so that ends every completion too.
    stops = [*stops, tokenizer.eos_token]
    # verbose=False: prompts longer than the context are expected here; they are cut below.
    encoded = [tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: list[Generated | None] = [None] * len(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_batch = max(1, batch_size // sampling.n_samples)
    for number, start in enumerate(range(0, len(order), per_batch)):
        batch = order[start : start + per_batch]
        rows = [encoded[i][-limit:] for i in batch]
        width = max(len(row) for row in rows)
        input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=device)
        attention = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
        torch.manual_seed(seed * 1_000_003 + number)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=sampling.max_new_tokens,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None, top_k=None,
                num_return_sequences=sampling.n_samples, pad_token_id=pad_id, use_cache=use_cache,
                stopping_criteria=StoppingCriteriaList([StopOnStrings(tokenizer, stops, width)]),
            )
        texts = tokenizer.batch_decode(output[:, width:])
        for row, index in enumerate(batch):
            samples = texts[row * sampling.n_samples : (row + 1) * sampling.n_samples]
            results[index] = Generated([cut_at_stops(text, stops) for text in samples],
                                       truncated=len(encoded[index]) > limit)
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]
