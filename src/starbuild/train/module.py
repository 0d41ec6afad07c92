"""The LightningModule: next-token loss, AdamW, linear warmup then cosine decay."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from starbuild.model.starcoder2 import ModelConfig, StarCoder2, next_token_loss
from starbuild.train.config import OptimConfig


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warmup, then cosine to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    decay_steps = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


class CausalLM(L.LightningModule):
    """Trains a StarCoder2 on packed sequences: predict token t+1 from tokens ≤ t."""

    def __init__(self, model_config: ModelConfig, optim: OptimConfig, max_steps: int,
                 compile_net: bool = False) -> None:
        super().__init__()
        self.net = StarCoder2(model_config)
        self.optim = optim
        self.max_steps = max_steps
        self.compile_net = compile_net

    def setup(self, stage: str) -> None:
        """Compile the inner network (not this LightningModule: torch.compile of it breaks self.log on
        torch 2.13 with Lightning 2.6, orchestration reference §4.2)."""
        if self.compile_net and stage == "fit" and not hasattr(self.net, "_orig_mod"):
            self.net = torch.compile(self.net)

    def plain_net(self) -> StarCoder2:
        """The network itself, without a compile wrapper: what checkpoints and exports hold."""
        return getattr(self.net, "_orig_mod", self.net)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self.net(batch[:, :-1]), batch[:, 1:])

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Loss of one batch, logged as train/loss."""
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """Loss of one val batch; Lightning averages them into val/loss."""
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=batch.shape[0], sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, decaying matrices and embeddings only (not biases or norms), stepped per batch."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.optim.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.optim.lr, betas=self.optim.betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_at(step, self.optim, self.max_steps) / self.optim.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
