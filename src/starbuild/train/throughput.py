"""Training throughput: tokens/s and model FLOPs utilisation, logged while training (never written to an out).

They depend on the machine, so they go to the log, the progress bar and logs/train_throughput.csv (which
dvc.yaml's top-level plots show), never to metrics/ or plots/, whose bytes must be the same on every machine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
import torch

from starbuild.core.shards import atomic_file
from starbuild.model.starcoder2 import ModelConfig

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s by device name (datasheets, without sparsity). Lightning's own table misses the H200.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a device, by the first known model name in its name; None when unknown."""
    return next((value for key, value in PEAK_BF16.items() if key in device_name), None)


def flops_per_token(config: ModelConfig, parameters: int, seq_length: int) -> float:
    """Training FLOPs per token: 6 x parameters, plus causal attention's QK^T and AV within the window."""
    window = min(config.sliding_window or seq_length, seq_length)
    return 6.0 * parameters + 6.0 * config.num_hidden_layers * config.hidden_size * window


# (step, tokens seen, tokens/s, MFU or None where the device's peak is unknown) at each logged step.
Rates = list[tuple[int, int, float, float | None]]


class Throughput(L.Callback):
    """Logs tokens/s and MFU every `every` optimizer steps and keeps them as `rows`."""

    def __init__(self, every: int, tokens_per_step: int, flops: float) -> None:
        self.every = every
        self.tokens_per_step = tokens_per_step
        self.flops = flops
        self.rows: Rates = []
        self._since: tuple[int, float] | None = None

    def state_dict(self) -> dict[str, object]:
        """The rows so far, saved in Lightning's checkpoints so a resumed run's file covers the whole run."""
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        """Restore the rows of the run being resumed."""
        self.rows = [(int(step), int(tokens), float(rate), None if mfu is None else float(mfu))
                     for step, tokens, rate, mfu in state_dict["rows"]]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock (at the resumed step when resuming)."""
        self._since = (trainer.global_step, time.perf_counter())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        """At a logged optimizer step: tokens/s since the previous one, and MFU on a device with a known peak."""
        step = trainer.global_step
        if self._since is None or step == self._since[0] or step % self.every:
            return
        first, started = self._since
        now = time.perf_counter()
        tokens_per_s = (step - first) * self.tokens_per_step / (now - started)
        self._since = (step, now)
        pl_module.log("train/tokens_per_s", tokens_per_s, prog_bar=True)
        peak = peak_flops(torch.cuda.get_device_name()) if trainer.strategy.root_device.type == "cuda" else None
        utilisation = self.flops * tokens_per_s / (peak * trainer.world_size) if peak else None
        self.rows.append((step, step * self.tokens_per_step, tokens_per_s, utilisation))
        if utilisation is not None:
            pl_module.log("train/mfu", utilisation, prog_bar=True)
            log.info("step %d: %.0f tokens/s, MFU %.1f%%", step, tokens_per_s, 100 * utilisation)
        else:
            log.info("step %d: %.0f tokens/s (MFU: no bf16 peak known for this device)", step, tokens_per_s)


def write_rates(path: Path, rows: Rates) -> None:
    """Write `step,tokens,tokens_per_s,mfu` rows atomically; mfu is empty where the device's peak is unknown."""
    lines = ["step,tokens,tokens_per_s,mfu"] + [
        f"{step},{tokens},{rate:.1f},{'' if mfu is None else f'{mfu:.4f}'}" for step, tokens, rate, mfu in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
