"""Stage `train`: a seeded, deterministic Lightning run on data/tokens -> models/checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from starbuild.core import layout
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext, StageError
from starbuild.determinism import environment, pinned
from starbuild.model.checkpoint import save_checkpoint
from starbuild.model.hf import load_hf, shape_mismatches
from starbuild.model.starcoder2 import ModelConfig
from starbuild.tokenizer.pack import read_index

# Built by name from conf/trainer/ (`_target_: starbuild.train.strategies.fsdp`): code this stage runs,
# so imported here to make it one of the stage's deps.
from starbuild.train import strategies  # noqa: F401
from starbuild.train.config import OptimConfig, TrainConfig, TrainerConfig
from starbuild.train.curves import LossCurves, write_curve, write_schedule
from starbuild.train.data import TokenDataModule
from starbuild.train.module import CausalLM
from starbuild.train.throughput import Throughput, flops_per_token, write_rates

log = logging.getLogger(__name__)

TRAIN_CURVE = layout.PLOTS / "train_loss.csv"
# Resumable checkpoints of unfinished runs, outside DVC's outs (each removed when its run finishes).
RESUME_ROOT = Path(".cache/starbuild/train")
VAL_CURVE = layout.PLOTS / "val_loss.csv"
LR_CURVE = layout.PLOTS / "train_lr.csv"
# Machine-dependent, so beside the outs rather than among them; dvc.yaml's top-level plots show it.
THROUGHPUT_LOG = layout.LOGS / "train_throughput.csv"


def check_tokens_fit(index: dict[str, Any], config: ModelConfig) -> None:
    """Fail when the packed sequences or the tokenizer's ids do not fit the model."""
    if int(index["seq_length"]) > config.max_position_embeddings:
        raise StageError(
            f"packed sequences hold {index['seq_length']} tokens but model.max_position_embeddings is "
            f"{config.max_position_embeddings}; lower tokenizer.pack.seq_length or raise "
            "model.max_position_embeddings"
        )
    if int(index["vocab_size"]) > config.vocab_size:
        raise StageError(
            f"the tokenizer has {index['vocab_size']} tokens but model.vocab_size is {config.vocab_size}; "
            "set model.vocab_size to at least the tokenizer's size"
        )
    if int(index["splits"][layout.TRAIN]["sequences"]) == 0:
        raise StageError("data/tokens holds no train sequences; add data or lower tokenizer.pack.seq_length")


def world_size(settings: TrainerConfig) -> int:
    """Processes that each train on their own micro-batches: devices (given as a count; else 1) x nodes."""
    devices = settings.devices if isinstance(settings.devices, int) and settings.devices > 0 else 1
    return devices * settings.num_nodes


def micro_batches_per_step(train: TrainConfig, settings: TrainerConfig, seq_length: int) -> int:
    """How many micro-batches make `train.global_batch_tokens` (1 when it is not set)."""
    if train.global_batch_tokens is None:
        return 1
    devices = world_size(settings)
    micro = train.batch_size * seq_length * devices
    if train.global_batch_tokens % micro:
        raise StageError(f"train.global_batch_tokens={train.global_batch_tokens} is not a multiple of batch_size "
                         f"x seq_length x devices = {train.batch_size} x {seq_length} x {devices} = {micro}; "
                         f"use a multiple such as {max(1, round(train.global_batch_tokens / micro)) * micro}")
    return train.global_batch_tokens // micro


def build_trainer(section: DictConfig, settings: TrainerConfig, callbacks: list[L.Callback],
                  val_batches: int, accumulate: int) -> L.Trainer:
    """The Trainer of the `trainer` section, writing nothing to disk by itself but `callbacks`' checkpoints."""
    return instantiate(
        section,
        accumulate_grad_batches=accumulate,
        # Lightning counts the interval in (micro-)batches, and rejects one longer than the single epoch.
        val_check_interval=min(settings.val_check_interval, settings.max_steps) * accumulate,
        limit_val_batches=val_batches,
        # The data module splits the batches between processes itself (TokenDataModule): Lightning's
        # distributed sampler would reshuffle the seeded order.
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=True,
        callbacks=callbacks,
    )


def resume_dir(ctx: StageContext, data: TokenDataModule) -> Path:
    """Where this run's resumable checkpoint lives: keyed by the train stage's settings and data/tokens.

    A run with other settings or other tokens never picks up this one's checkpoint. The tokens are
    identified by index.json, which holds every shard's SHA-256.
    """
    settings = {key: OmegaConf.to_container(ctx.cfg[key], resolve=True) for key in ("model", "trainer", "optim",
                                                                                    "runtime")}
    settings.update(seed=int(ctx.cfg.seed), batch_size=int(ctx.cfg.train.batch_size),
                    global_batch_tokens=ctx.cfg.train.get("global_batch_tokens"))
    key = hashlib.sha256(json.dumps([settings, data.index], sort_keys=True).encode()).hexdigest()[:16]
    return ctx.root / RESUME_ROOT / key


def start_from(module: CausalLM, config: ModelConfig, root: Path) -> None:
    """Load `model.init_from`'s weights into the module (continued pretraining); its shape must be config's."""
    path = Path(config.init_from) if Path(config.init_from).is_absolute() else root / config.init_from
    try:
        pretrained = load_hf(path)
    except (OSError, ValueError) as err:
        raise StageError(f"model.init_from={config.init_from}: {err}; give a local Hugging Face StarCoder2 "
                         "directory or null") from err
    differences = shape_mismatches(config, pretrained.config)
    if differences:
        raise StageError(f"model.init_from={config.init_from} has another shape ({'; '.join(differences)}, "
                         "this run vs the checkpoint); pick the model preset that matches it (model=3b, ...)")
    module.net.load_state_dict(pretrained.state_dict(), strict=True)
    log.info("starting from the weights of %s (%d parameters)", path, module.net.num_parameters())


def run_train(ctx: StageContext) -> None:
    """Train the model on data/tokens; write the checkpoint, the loss curves and the metrics."""
    settings = ctx.section("trainer", TrainerConfig)
    device = "cuda" if settings.accelerator in ("gpu", "cuda") else "cpu"
    with pinned(ctx, device):
        train_pinned(ctx, settings, device)


def train_pinned(ctx: StageContext, settings: TrainerConfig, device: str) -> None:
    """run_train once threads, kernels and cores are pinned."""
    cfg = ctx.cfg
    tokens_dir = ctx.input(layout.TOKENS)
    config = ctx.section("model", ModelConfig)
    optim = ctx.section("optim", OptimConfig)
    train = ctx.section("train", TrainConfig)
    with ctx.reading(layout.TOKENS):
        index = read_index(tokens_dir)
        accumulate = micro_batches_per_step(train, settings, int(index["seq_length"]))
        data = TokenDataModule(tokens_dir, train.batch_size, settings.max_steps, int(cfg.seed), accumulate)
        data.check_files()
    check_tokens_fit(data.index, config)
    val_batches = settings.limit_val_batches if data.split_size(layout.VAL) else 0
    if not val_batches:
        log.warning("data/tokens holds no val sequences (or trainer.limit_val_batches is 0): no validation")
    log.info("read %s: %d train / %d val sequences of %d tokens", tokens_dir,
             data.split_size(layout.TRAIN), data.split_size(layout.VAL), data.index["seq_length"])

    L.seed_everything(int(cfg.seed), workers=True)
    module = CausalLM(config, optim, settings.max_steps, compile_net=train.compile)
    if config.init_from:
        start_from(module, config, ctx.root)
    seq_length = int(data.index["seq_length"])
    tokens_per_step = train.batch_size * accumulate * seq_length * world_size(settings)
    curves = LossCurves(settings.log_every_n_steps, tokens_per_step)
    flops = flops_per_token(config, module.net.num_parameters(), seq_length)
    throughput = Throughput(settings.log_every_n_steps, tokens_per_step, flops)
    callbacks: list[L.Callback] = [curves, throughput]
    checkpoints = resume_dir(ctx, data)
    resume_from = checkpoints / "last.ckpt" if train.resume and (checkpoints / "last.ckpt").is_file() else None
    if train.checkpoint_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0,
                                         every_n_train_steps=train.checkpoint_every_n_steps))
    if resume_from is not None:
        log.info("resuming the interrupted run from %s", resume_from)
    trainer = build_trainer(cfg.trainer, settings, callbacks, val_batches, accumulate)
    with warnings.catch_warnings():
        # Workers would only copy rows out of a memory map; the main process does it as fast.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # The data module's state carries the step, and its sampler resumes there (tests/test_train.py).
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        trainer.fit(module, datamodule=data, ckpt_path=resume_from)
        if val_batches and (not curves.val or curves.val[-1][0] != trainer.global_step):
            # So that the final val loss belongs to the final weights whatever the interval.
            trainer.validate(module, datamodule=data, verbose=False)

    if not trainer.is_global_zero:
        return  # with several processes, the first writes the outputs
    with atomic_output(ctx.output(layout.CHECKPOINTS)) as tmp:
        save_checkpoint(module.plain_net(), tmp)
    # The run is complete: its resumable checkpoint would only take space.
    shutil.rmtree(checkpoints, ignore_errors=True)
    write_curve(ctx.output(TRAIN_CURVE), curves.train)
    write_curve(ctx.output(VAL_CURVE), curves.val)
    write_schedule(ctx.output(LR_CURVE), curves.schedule)
    write_rates(ctx.output(THROUGHPUT_LOG), throughput.rows)
    log.info("wrote %s, %s, %s", ctx.output(layout.CHECKPOINTS), ctx.output(TRAIN_CURVE),
             ctx.output(VAL_CURVE))
    ctx.write_metrics({**train_metrics(curves, trainer.global_step, tokens_per_step, module),
                       "environment": environment(device)})


def train_metrics(curves: LossCurves, steps: int, tokens_per_step: int, module: CausalLM) -> dict[str, Any]:
    """First and final losses, steps, tokens read and parameter count."""
    def last(curve: list[tuple[int, float]]) -> float | None:
        return round(curve[-1][1], 6) if curve else None

    return {
        "train_loss_first": round(curves.train[0][1], 6) if curves.train else None,
        "train_loss_final": last(curves.train),
        "val_loss_final": last(curves.val),
        "steps": steps,
        "tokens_seen": steps * tokens_per_step,
        "parameters": module.plain_net().num_parameters(),
    }
