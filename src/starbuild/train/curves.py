"""Curves for DVC plots: a Callback that collects the losses and learning rate, and a CSV writer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from starbuild.core.shards import atomic_file

Curve = list[tuple[int, float]]
# (step, learning rate, tokens seen) at each logged train step.
Schedule = list[tuple[int, float, int]]


class LossCurves(L.Callback):
    """Collects the train loss every `every` optimizer steps and the val loss after each validation.

    A train row holds the mean loss of the (micro-)batches since the previous row; step 1 gets its
    own row so the curve starts at the untrained loss.
    """

    def __init__(self, every: int, tokens_per_step: int = 0) -> None:
        if every < 1:
            raise ValueError(f"trainer.log_every_n_steps must be ≥ 1, got {every}")
        self.every = every
        self.tokens_per_step = tokens_per_step
        self.train: Curve = []
        self.val: Curve = []
        self.schedule: Schedule = []
        self._window_sum = 0.0
        self._window_count = 0
        # The optimizer step seen at the previous batch: with accumulation, several batches share one.
        self._step = 0

    def state_dict(self) -> dict[str, object]:
        """The curves so far, saved in Lightning's checkpoints so a resumed run continues them."""
        return {"train": list(self.train), "val": list(self.val), "schedule": list(self.schedule),
                "window": (self._window_sum, self._window_count), "step": self._step}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        """Restore the curves of the run being resumed."""
        self.train = [(int(step), float(loss)) for step, loss in state_dict["train"]]
        self.val = [(int(step), float(loss)) for step, loss in state_dict["val"]]
        self.schedule = [(int(step), float(lr), int(tokens)) for step, lr, tokens in state_dict["schedule"]]
        self._window_sum, self._window_count = state_dict["window"]
        self._step = int(state_dict["step"])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
        batch_idx: int,
    ) -> None:
        """Add this batch's loss to the window; close the window on a logged step."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # The mean over the processes (a no-op with one), and Lightning hands callbacks the loss already
        # divided by the accumulation count.
        loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
        self._window_sum += float(loss.item()) * trainer.accumulate_grad_batches
        self._window_count += 1
        step = trainer.global_step
        if step == self._step:  # an accumulating micro-batch: no optimizer step yet
            return
        self._step = step
        if step == 1 or step % self.every == 0 or step == trainer.max_steps:
            self.train.append((step, self._window_sum / self._window_count))
            # The rate the next step will use, as the scheduler has already stepped.
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.schedule.append((step, float(lr), step * self.tokens_per_step))
            self._window_sum, self._window_count = 0.0, 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record val/loss at the current step (not during the sanity check)."""
        value = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or value is None:
            return
        self.val.append((trainer.global_step, float(value)))


def write_curve(path: Path, curve: Curve) -> None:
    """Write `step,loss` rows atomically, the loss with 6 decimals for stable bytes."""
    lines = ["step,loss"] + [f"{step},{loss:.6f}" for step, loss in curve]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_schedule(path: Path, schedule: Schedule) -> None:
    """Write `step,lr,tokens` rows atomically, the rate in 6 significant digits for stable bytes."""
    lines = ["step,lr,tokens"] + [f"{step},{lr:.6g},{tokens}" for step, lr, tokens in schedule]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
