"""The train stage on synthetic tokens: determinism, a falling loss, its outputs and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from starbuild.core import layout
from starbuild.core.stage import StageContext, StageError
from starbuild.model.checkpoint import load_checkpoint
from starbuild.model.starcoder2 import ModelConfig
from starbuild.tokenizer import pack
from starbuild.train.config import OptimConfig
from starbuild.train.data import SeededEpochSampler
from starbuild.train.module import lr_at
from starbuild.train.stage import run_train
from tests.factories import stage_context

OUTPUTS = [
    layout.CHECKPOINTS / "model.safetensors",
    layout.CHECKPOINTS / "config.json",
    layout.PLOTS / "train_loss.csv",
    layout.PLOTS / "val_loss.csv",
    layout.PLOTS / "train_lr.csv",
    layout.metrics_file("train"),
]


def write_tokens(root: Path, seq_length: int, vocab_size: int = 300, train: int = 64, val: int = 16,
                 shard_sequences: int = 24) -> None:
    """data/tokens as the tokenize stage lays it out (several shards per split), holding learnable sequences.

    Each row counts up from a random start with step 1 or 2 through 31 ids (mod 31), so the
    next token is predictable and a few steps already lower the loss.
    """
    rng = np.random.default_rng(0)
    directory = root / layout.TOKENS
    splits = {}
    for split, n in (("train", train), ("val", val)):
        start = rng.integers(0, 31, size=(n, 1))
        step = rng.integers(1, 3, size=(n, 1))
        rows = ((start + step * np.arange(seq_length)) % 31 + 9).astype("<u2")
        with pack.ShardWriter(directory, split, seq_length, shard_sequences, rows.dtype) as writer:
            writer.write(rows.ravel())
        splits[split] = {"sequences": n, "tokens": n * seq_length, "dropped_tail_tokens": 0, "shards": writer.shards}
    pack.write_index(directory, {"dtype": "uint16", "seq_length": seq_length, "vocab_size": vocab_size,
                                 "shard_sequences": shard_sequences, "splits": splits})


def hand_run_project(root: Path) -> Path:
    """conf/, stages/ and dvc.yaml with smoke-sized data/tokens under `root`, for hand runs of the train stage."""
    from tests.conftest import REPO_ROOT

    for name in ("conf", "stages"):
        shutil.copytree(REPO_ROOT / name, root / name)
    shutil.copy(REPO_ROOT / layout.DVC_YAML, root / layout.DVC_YAML)
    write_tokens(root, seq_length=64)
    return root


def context(root: Path, cfg: DictConfig) -> StageContext:
    return stage_context("train", cfg, root)


def read_curve(path: Path) -> list[tuple[int, float]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "step,loss"
    return [(int(step), float(loss)) for step, loss in (line.split(",") for line in lines[1:])]


def test_train_is_deterministic_and_the_loss_falls(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    seq_length = smoke_cfg.tokenizer.pack.seq_length
    for name in ("a", "b"):
        write_tokens(tmp_path / name, seq_length)
        run_train(context(tmp_path / name, smoke_cfg))

    for rel in OUTPUTS:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob(".tmp-*"))

    max_steps = smoke_cfg.trainer.max_steps
    train_curve = read_curve(tmp_path / "a" / layout.PLOTS / "train_loss.csv")
    assert [s for s, _ in train_curve] == [1, *range(smoke_cfg.trainer.log_every_n_steps, max_steps + 1,
                                                     smoke_cfg.trainer.log_every_n_steps)]
    assert train_curve[-1][1] < train_curve[0][1] - 0.5
    val_curve = read_curve(tmp_path / "a" / layout.PLOTS / "val_loss.csv")
    assert [s for s, _ in val_curve] == list(range(smoke_cfg.trainer.val_check_interval, max_steps + 1,
                                                  smoke_cfg.trainer.val_check_interval))
    assert val_curve[-1][1] < val_curve[0][1]

    metrics = json.loads((tmp_path / "a" / layout.metrics_file("train")).read_text(encoding="utf-8"))
    model = load_checkpoint(tmp_path / "a" / layout.CHECKPOINTS)
    assert metrics == {
        "train_loss_first": train_curve[0][1],
        "train_loss_final": train_curve[-1][1],
        "val_loss_final": val_curve[-1][1],
        "steps": max_steps,
        "tokens_seen": max_steps * smoke_cfg.train.batch_size * seq_length,
        "parameters": model.num_parameters(),
        "environment": {"torch": torch.__version__, "device": "cpu", "threads": smoke_cfg.runtime.threads,
                        "cpu_isa": smoke_cfg.runtime.cpu_isa, "deterministic": True},
    }
    assert model.config == ModelConfig.from_mapping(OmegaConf.to_container(smoke_cfg.model))


def test_the_lr_curve_follows_the_schedule_and_counts_tokens(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    from starbuild.train.config import OptimConfig
    from starbuild.train.module import lr_at

    seq_length = smoke_cfg.tokenizer.pack.seq_length
    write_tokens(tmp_path, seq_length)
    run_train(context(tmp_path, smoke_cfg))
    lines = (tmp_path / layout.PLOTS / "train_lr.csv").read_text().splitlines()
    assert lines[0] == "step,lr,tokens"
    rows = [(int(a), float(b), int(c)) for a, b, c in (line.split(",") for line in lines[1:])]
    loss_steps = [step for step, _ in read_curve(tmp_path / layout.PLOTS / "train_loss.csv")]
    assert [step for step, _, _ in rows] == loss_steps
    optim = OptimConfig(**OmegaConf.to_container(smoke_cfg.optim))
    for step, lr, tokens in rows:
        # The rate the next step uses, after the scheduler stepped `step` times.
        assert lr == pytest.approx(lr_at(step, optim, smoke_cfg.trainer.max_steps), rel=1e-5)
        assert tokens == step * smoke_cfg.train.batch_size * seq_length


def test_throughput_is_logged_beside_the_outs(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    seq_length = smoke_cfg.tokenizer.pack.seq_length
    write_tokens(tmp_path, seq_length)
    run_train(context(tmp_path, smoke_cfg))
    lines = (tmp_path / "logs" / "train_throughput.csv").read_text().splitlines()
    assert lines[0] == "step,tokens,tokens_per_s,mfu"
    rows = [line.split(",") for line in lines[1:]]
    every = smoke_cfg.trainer.log_every_n_steps
    assert [int(step) for step, *_ in rows] == list(range(every, smoke_cfg.trainer.max_steps + 1, every))
    for step, tokens, rate, mfu in rows:
        assert int(tokens) == int(step) * smoke_cfg.train.batch_size * seq_length
        # No bf16 peak is known for a CPU, so no MFU.
        assert float(rate) > 0 and mfu == ""
    # dvc.yaml plots it, and no stage declares it: its bytes differ from machine to machine.
    from tests.conftest import REPO_ROOT

    spec = yaml.safe_load((REPO_ROOT / layout.DVC_YAML).read_text())
    plotted = {file for entry in spec["plots"] for name, plot in entry.items() for file in plot["y"]
               if name.startswith("train_")}
    assert plotted == {"logs/train_throughput.csv"}
    assert layout.producing_out(Path("logs/train_throughput.csv"), REPO_ROOT) is None


def test_final_val_loss_is_at_the_last_step(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"max_steps": 7, "val_check_interval": 5}})
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length)
    run_train(context(tmp_path, cfg))
    assert [s for s, _ in read_curve(tmp_path / layout.PLOTS / "val_loss.csv")] == [5, 7]
    assert [s for s, _ in read_curve(tmp_path / layout.PLOTS / "train_loss.csv")] == [1, 5, 7]


def test_empty_val_split_trains_without_validation(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"max_steps": 3}})
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length, val=0)
    run_train(context(tmp_path, cfg))
    assert read_curve(tmp_path / layout.PLOTS / "val_loss.csv") == []
    metrics = json.loads((tmp_path / layout.metrics_file("train")).read_text(encoding="utf-8"))
    assert metrics["val_loss_final"] is None and metrics["steps"] == 3


def test_sequences_longer_than_the_model_fail(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    write_tokens(tmp_path, smoke_cfg.model.max_position_embeddings + 1)
    with pytest.raises(StageError, match="max_position_embeddings"):
        run_train(context(tmp_path, smoke_cfg))
    assert not (tmp_path / layout.CHECKPOINTS).exists()


def test_tokenizer_larger_than_the_model_fails(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length, vocab_size=smoke_cfg.model.vocab_size + 1)
    with pytest.raises(StageError, match="model.vocab_size"):
        run_train(context(tmp_path, smoke_cfg))


def test_missing_tokens_name_the_stage_to_run(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    with pytest.raises(StageError, match="dvc repro tokenize"):
        run_train(context(tmp_path, smoke_cfg))


def test_truncated_tokens_fail_clearly(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length)
    train_bin = tmp_path / layout.TOKENS / "train" / "part-00001.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-2])
    with pytest.raises(StageError, match=r"^data/tokens is not readable \(.*\); restore it with `dvc checkout "
                                         r"data/tokens` or rebuild it with `dvc repro -f -s tokenize`$"):
        run_train(context(tmp_path, smoke_cfg))


def test_a_shard_changed_in_place_fails_before_training(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length)
    shard = tmp_path / layout.TOKENS / "val" / "part-00000.bin"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(StageError, match=r"^data/tokens is not readable \(ValueError: .*val/part-00000.bin does not "
                                         r"match its SHA-256"):
        run_train(context(tmp_path, smoke_cfg))
    assert not (tmp_path / layout.CHECKPOINTS).exists()


def test_bad_model_shape_fails_clearly(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    write_tokens(tmp_path, smoke_cfg.tokenizer.pack.seq_length)
    cfg = OmegaConf.merge(smoke_cfg, {"model": {"num_key_value_heads": 3}})
    with pytest.raises(StageError, match="conf/model"):
        run_train(context(tmp_path, cfg))


def test_sampler_covers_each_sequence_once_per_pass() -> None:
    order = list(SeededEpochSampler(n=10, num_samples=25, seed=3))
    assert len(order) == 25
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    assert order[:10] != order[10:20]
    assert order == list(SeededEpochSampler(n=10, num_samples=25, seed=3))
    assert order != list(SeededEpochSampler(n=10, num_samples=25, seed=4))


def test_accumulation_reaches_the_same_global_batch(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    seq_length = smoke_cfg.tokenizer.pack.seq_length
    whole = OmegaConf.merge(smoke_cfg, {"train": {"batch_size": 8}})
    halves = OmegaConf.merge(smoke_cfg, {"train": {"batch_size": 4, "global_batch_tokens": 8 * seq_length}})
    for name, cfg in (("whole", whole), ("halves", halves)):
        write_tokens(tmp_path / name, seq_length)
        run_train(context(tmp_path / name, cfg))
    curves = [read_curve(tmp_path / name / layout.PLOTS / "train_loss.csv") for name in ("whole", "halves")]
    # The same sequences in every step, its gradient summed in two halves: equal up to float rounding.
    assert [step for step, _ in curves[0]] == [step for step, _ in curves[1]]
    for (_, a), (_, b) in zip(*curves, strict=True):
        assert abs(a - b) < 1e-4
    vals = [read_curve(tmp_path / name / layout.PLOTS / "val_loss.csv") for name in ("whole", "halves")]
    assert [step for step, _ in vals[0]] == [step for step, _ in vals[1]]
    metrics = [json.loads((tmp_path / name / layout.metrics_file("train")).read_text()) for name in ("whole", "halves")]
    assert metrics[0]["tokens_seen"] == metrics[1]["tokens_seen"] == smoke_cfg.trainer.max_steps * 8 * seq_length
    odd = OmegaConf.merge(halves, {"train": {"global_batch_tokens": 8 * seq_length + 1}})
    with pytest.raises(StageError, match=r"global_batch_tokens=.* is not a multiple of batch_size x seq_length"):
        run_train(context(tmp_path / "halves", odd))


def test_a_resumed_sampler_continues_the_same_order() -> None:
    full = list(SeededEpochSampler(10, 47, seed=3))
    for start in (0, 7, 10, 23, 47):
        assert list(SeededEpochSampler(10, 47, seed=3, start=start)) == full[start:]


def test_lr_warms_up_then_decays_to_min_lr() -> None:
    cfg = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=4, weight_decay=0.1, betas=(0.9, 0.95))
    rates = [lr_at(step, cfg, max_steps=20) for step in range(21)]
    assert rates[:5] == sorted(rates[:5]) and rates[4] == pytest.approx(1.0)
    assert rates[4:] == sorted(rates[4:], reverse=True)
    assert rates[20] == pytest.approx(0.1)


def test_continued_pretraining_starts_from_a_hf_directory(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    from transformers import Starcoder2ForCausalLM

    from starbuild.model.hf import SpecialIds, to_hf_config
    from starbuild.model.starcoder2 import StarCoder2

    config = ModelConfig.from_mapping(OmegaConf.to_container(smoke_cfg.model))
    torch.manual_seed(123)
    pretrained = StarCoder2(config)
    hf_model = Starcoder2ForCausalLM(to_hf_config(config, SpecialIds(eos=0, pad=4)))
    hf_model.load_state_dict(pretrained.state_dict())
    hf_model.save_pretrained(tmp_path / "pretrained")
    write_tokens(tmp_path / "run", smoke_cfg.tokenizer.pack.seq_length)
    # One AdamW step moves a weight by about lr at most: the result shows where training started.
    lr = 1e-4
    cfg = OmegaConf.merge(smoke_cfg, {"model": {"init_from": str(tmp_path / "pretrained")},
                                      "optim": {"lr": lr, "min_lr": 0.0}, "trainer": {"max_steps": 1}})
    run_train(context(tmp_path / "run", cfg))
    trained = load_checkpoint(tmp_path / "run" / layout.CHECKPOINTS)
    for (name, ours), (_, theirs) in zip(trained.state_dict().items(), pretrained.state_dict().items(), strict=True):
        assert (ours - theirs).abs().max() <= 2 * lr, name
    assert any((ours - theirs).abs().max() > 0.05 for ours, theirs in zip(
        trained.state_dict().values(), StarCoder2(config).state_dict().values(), strict=True))

    wider = OmegaConf.merge(cfg, {"model": {"hidden_size": 64}})
    with pytest.raises(StageError, match=r"has another shape \(hidden_size: 64 vs 32.*pick the model preset"):
        run_train(context(tmp_path / "run", wider))
    missing = OmegaConf.merge(cfg, {"model": {"init_from": "models/nowhere"}})
    with pytest.raises(StageError, match=r"model.init_from=models/nowhere: .*not a Hugging Face model directory"):
        run_train(context(tmp_path / "run", missing))


RUN_TRAIN = """
import sys
from pathlib import Path
from omegaconf import OmegaConf
from starbuild.train.stage import run_train
from tests.factories import stage_context
run_train(stage_context("train", OmegaConf.load(sys.argv[1]), Path(sys.argv[2])))
"""


def test_a_killed_run_resumes_to_the_same_result(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"max_steps": 300, "val_check_interval": 50},
                                      "train": {"checkpoint_every_n_steps": 20}})
    seq_length = smoke_cfg.tokenizer.pack.seq_length
    for name in ("whole", "killed"):
        write_tokens(tmp_path / name, seq_length)
    run_train(context(tmp_path / "whole", cfg))
    assert not list((tmp_path / "whole" / ".cache").rglob("*.ckpt")), "a finished run keeps no resume checkpoint"

    # The same run in another process, killed (SIGKILL) once its first checkpoint is on disk.
    config_file = tmp_path / "cfg.yaml"
    OmegaConf.save(cfg, config_file)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    process = subprocess.Popen([sys.executable, "-c", RUN_TRAIN, str(config_file), str(tmp_path / "killed")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed" / ".cache").rglob("last.ckpt")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed" / layout.CHECKPOINTS).exists(), "the run finished before it could be killed"

    run_train(context(tmp_path / "killed", cfg))
    for rel in OUTPUTS:
        assert (tmp_path / "killed" / rel).read_bytes() == (tmp_path / "whole" / rel).read_bytes(), rel
    assert not list((tmp_path / "killed" / ".cache").rglob("*.ckpt"))


def test_the_fsdp_preset_shards_by_decoder_layer() -> None:
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import FSDPStrategy

    from starbuild.core.config import compose
    from starbuild.model.starcoder2 import DecoderLayer
    from starbuild.train.config import TrainerConfig
    from starbuild.train.stage import world_size
    from tests.conftest import REPO_ROOT

    cfg = compose(["trainer=fsdp", "trainer.num_nodes=4"], conf_dir=REPO_ROOT / "conf")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {DecoderLayer}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {DecoderLayer}
    settings = TrainerConfig(**OmegaConf.to_container(cfg.trainer))
    assert (settings.accelerator, settings.precision, world_size(settings)) == ("gpu", "bf16-mixed", 32)


@pytest.mark.e2e
def test_a_compiled_network_trains_like_the_eager_one(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"max_steps": 6, "val_check_interval": 6}})
    for name, compiled in (("eager", False), ("compiled", True)):
        write_tokens(tmp_path / name, smoke_cfg.tokenizer.pack.seq_length)
        run_train(context(tmp_path / name, OmegaConf.merge(cfg, {"train": {"compile": compiled}})))
    eager, compiled = (read_curve(tmp_path / name / layout.PLOTS / "train_loss.csv") for name in ("eager", "compiled"))
    for (step, a), (_, b) in zip(eager, compiled, strict=True):
        assert a == pytest.approx(b, abs=1e-3), step
    # The checkpoint holds the plain network: it loads without the compile wrapper's names.
    model = load_checkpoint(tmp_path / "compiled" / layout.CHECKPOINTS)
    assert not any("_orig_mod" in key for key in model.state_dict())
