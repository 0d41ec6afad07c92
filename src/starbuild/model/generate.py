"""Greedy decoding with starbuild's own network: the reference the export is checked against."""

from __future__ import annotations

import torch

from starbuild.model.starcoder2 import StarCoder2


@torch.no_grad()
def greedy(model: StarCoder2, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None) -> torch.Tensor:
    """`prompt` (batch, length) followed by up to `max_new_tokens` argmax tokens, stopping early once
    every row has produced `eos_id`; rows that finished first keep `eos_id`."""
    was_training = model.training
    model.eval()
    ids = prompt
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        # No KV cache: the whole (windowed) context each step, so the logits are the training forward's.
        context = ids[:, -model.config.max_position_embeddings :]
        next_ids = model(context)[:, -1].argmax(dim=-1)
        if eos_id is not None:
            next_ids = torch.where(finished, torch.full_like(next_ids, eos_id), next_ids)
            finished |= next_ids == eos_id
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        if eos_id is not None and finished.all():
            break
    model.train(was_training)
    return ids
