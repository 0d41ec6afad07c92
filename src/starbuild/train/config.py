"""The training sections of the config: `trainer` (Lightning's settings), `optim` and `train`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its schedule: linear warmup, then cosine decay to min_lr at the last step."""

    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    betas: tuple[float, float]

    def __post_init__(self) -> None:
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be within [0, lr={self.lr}], got {self.min_lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must be two values within [0, 1), got {list(self.betas)}")
        object.__setattr__(self, "betas", tuple(self.betas))


@dataclass(frozen=True)
class TrainerConfig:
    """The Lightning Trainer arguments that are settings; `_target_` builds the Trainer.

    A Trainer argument becomes settable from conf/trainer/ by adding a field here.
    """

    _target_: str
    accelerator: str
    devices: Any
    precision: str
    max_steps: int
    gradient_clip_val: float
    val_check_interval: int
    limit_val_batches: int
    log_every_n_steps: int
    deterministic: bool
    # Lightning's strategy name, or a `_target_` mapping that builds one (conf/trainer/fsdp.yaml).
    strategy: Any = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        for key in ("max_steps", "val_check_interval", "log_every_n_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.limit_val_batches < 0:
            raise ValueError(f"limit_val_batches must be ≥ 0, got {self.limit_val_batches}")


@dataclass(frozen=True)
class TrainConfig:
    """What the training data module reads, and how a run survives being killed."""

    # Sequences per forward pass on one device (a micro-batch).
    batch_size: int
    # Tokens per optimizer step over all devices, reached by accumulating micro-batches; None: one
    # micro-batch per step. Must be a multiple of batch_size x seq_length x devices.
    global_batch_tokens: int | None = None
    # torch.compile the inner network (a GPU speed-up; the numbers then depend on the compiled kernels).
    compile: bool = False
    # A resumable checkpoint every this many steps (0: none), kept outside DVC's outs until the run ends.
    checkpoint_every_n_steps: int = 0
    # Continue from the checkpoint of an interrupted run with the same settings and data.
    resume: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.global_batch_tokens is not None and self.global_batch_tokens < 1:
            raise ValueError(f"global_batch_tokens must be null or ≥ 1, got {self.global_batch_tokens}")
        if self.checkpoint_every_n_steps < 0:
            raise ValueError(f"checkpoint_every_n_steps must be ≥ 0, got {self.checkpoint_every_n_steps}")
