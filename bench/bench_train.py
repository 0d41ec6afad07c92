"""Training throughput: the train stage's Lightning loop against a bare PyTorch loop, same network and batches.

Both train the `tiny` preset (conf/model/tiny.yaml, this machine's CPU, the runtime section's pinned
threads) for STEPS optimizer steps on the same batches of random token rows, with the same AdamW groups,
schedule and gradient clipping; the first WARMUP steps of each are left out of the timing. Lightning runs
`CausalLM` in a Trainer built as the stage builds it (no logger, no checkpoints, no validation). Prints
tokens/s of both and the ratio (target >= 0.95x), best of REPEATS runs each.
Run: `.venv/bin/python bench/bench_train.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from starbuild.core.config import compose
from starbuild.determinism import RuntimeConfig, pin
from starbuild.model.starcoder2 import ModelConfig, next_token_loss
from starbuild.train.config import OptimConfig
from starbuild.train.module import CausalLM

ROOT = Path(__file__).resolve().parents[1]
STEPS, WARMUP, REPEATS = 60, 10, 3
BATCH, SEQ = 8, 256


class StepClock(L.Callback):
    """Wall time of the steps after WARMUP."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == WARMUP:
            self.start = time.perf_counter()
        elif trainer.global_step == STEPS:
            self.seconds = time.perf_counter() - self.start


def batches(vocab_size: int) -> torch.Tensor:
    """STEPS batches of random rows, fixed by seed."""
    return torch.randint(0, vocab_size, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(0))


def bare(config: ModelConfig, optim: OptimConfig, data: torch.Tensor) -> float:
    """Seconds of the timed steps of a plain loop: forward, backward, clip, step, schedule."""
    torch.manual_seed(0)
    module = CausalLM(config, optim, STEPS)
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    module.train()
    start = 0.0
    for step in range(STEPS):
        if step == WARMUP:
            start = time.perf_counter()
        batch = data[step * BATCH : (step + 1) * BATCH]
        loss = next_token_loss(module.net(batch[:, :-1]), batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.net.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def lightning(config: ModelConfig, optim: OptimConfig, data: torch.Tensor) -> float:
    """Seconds of the timed steps of the same training through a Lightning Trainer."""
    torch.manual_seed(0)
    module = CausalLM(config, optim, STEPS)
    clock = StepClock()
    loader = DataLoader(TensorDataset(data), batch_size=BATCH, shuffle=False, collate_fn=lambda rows: torch.stack(
        [row[0] for row in rows]))
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=STEPS, gradient_clip_val=1.0,
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(module, train_dataloaders=loader)
    return clock.seconds


def main() -> None:
    cfg = compose([], conf_dir=ROOT / "conf")
    pin(RuntimeConfig(**OmegaConf.to_container(cfg.runtime)))
    config = ModelConfig.from_mapping({**OmegaConf.to_container(cfg.model), "vocab_size": 4096,
                                       "max_position_embeddings": SEQ})
    optim = OptimConfig(**{**OmegaConf.to_container(cfg.optim), "warmup_steps": 5})
    data = batches(config.vocab_size)
    tokens = (STEPS - WARMUP) * BATCH * SEQ
    best = {"bare": float("inf"), "lightning": float("inf")}
    for _ in range(REPEATS):
        best["bare"] = min(best["bare"], bare(config, optim, data))
        best["lightning"] = min(best["lightning"], lightning(config, optim, data))
    print(f"tiny model, {config.num_hidden_layers} layers x {config.hidden_size}, batch {BATCH} x {SEQ} tokens, "
          f"{STEPS - WARMUP} timed steps, best of {REPEATS}, {cfg.runtime.threads} threads")
    for name, seconds in best.items():
        print(f"{name:10s} {seconds:6.2f} s  {tokens / seconds:9.0f} tokens/s")
    print(f"throughput ratio lightning/bare: {best['bare'] / best['lightning']:.3f}x (target >= 0.95x)")


if __name__ == "__main__":
    main()
