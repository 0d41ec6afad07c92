"""The training checkpoint: `model.safetensors` (our state dict) + `config.json` (ModelConfig).

Both files depend only on the weights and the config, so a deterministic run gives identical bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from starbuild.model.starcoder2 import ModelConfig, StarCoder2

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# A tied head shares the embedding's storage; safetensors refuses shared tensors, so the head is
# left out and re-tied on load.
TIED_KEY = "lm_head.weight"


def state_for_saving(model: StarCoder2) -> dict[str, torch.Tensor]:
    """The state dict to store: contiguous CPU tensors, the tied head left out."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop(TIED_KEY, None)
    return state


def save_checkpoint(model: StarCoder2, directory: Path) -> None:
    """Write the weights and the config into `directory` (which must exist)."""
    save_file(state_for_saving(model), directory / WEIGHTS_FILE, metadata={"format": "pt"})
    text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"
    (directory / CONFIG_FILE).write_text(text, encoding="utf-8")


def load_config(directory: Path) -> ModelConfig:
    """The ModelConfig stored with a checkpoint."""
    return ModelConfig.from_mapping(json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")))


def load_checkpoint(directory: Path) -> StarCoder2:
    """Rebuild the model stored in `directory`, in eval mode on the CPU."""
    model = StarCoder2(load_config(directory))
    state = load_file(directory / WEIGHTS_FILE)
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {TIED_KEY} if model.config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise ValueError(f"{directory}: checkpoint does not match its config "
                         f"(missing {sorted(set(missing) - allowed_missing)}, unexpected {unexpected})")
    return model.eval()
