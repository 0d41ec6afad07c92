"""Export to a transformers directory and the eval stage on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, Starcoder2ForCausalLM

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.eval.stage import run_eval
from starbuild.eval.val_loss import token_byte_lengths, val_token_stream, windows
from starbuild.model.checkpoint import load_checkpoint, save_checkpoint
from starbuild.model.stage import run_export
from starbuild.model.starcoder2 import ModelConfig, StarCoder2
from starbuild.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, SPECIAL_TOKENS
from tests.factories import doc_row, stage_context, write_table


def repo_doc(index: int) -> str:
    """A repository document in the format stage's layout, with some non-ASCII text."""
    files = [
        f"<file_sep>pkg_{index}/core.py\n" + "".join(
            f"def f_{i}(x):\n    return x * {i} + {index}  # héllo ✓\n" for i in range(12)),
        f"<file_sep>README.md\n# Projet {index} — données\n",
    ]
    return f"<repo_name>org/repo-{index}" + "".join(files)


VAL_DOCS = [repo_doc(i) for i in range(6)] + ["print('done')<|endoftext|>"]


def train_tokenizer() -> Tokenizer:
    """A tiny byte-level BPE with StarCoder2's special tokens at the lowest ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([repo_doc(i) for i in range(10, 20)], trainer)
    return tokenizer


def write_val_docs(root: Path, texts: list[str]) -> None:
    """data/docs/val as two shards of the DOCS schema."""
    half = len(texts) // 2
    shards = [[doc_row(f"org/repo-{i}", "val", t, n_files=2) for i, t in enumerate(part)]
              for part in (texts[:half], texts[half:])]
    write_table(root / layout.DOCS / "val", shards, schemas.DOCS)


@pytest.fixture
def built(tmp_path: Path, smoke_cfg: DictConfig) -> Path:
    """A repository root holding a checkpoint, a tokenizer and val docs."""
    tokenizer_dir = tmp_path / layout.TOKENIZER
    tokenizer_dir.mkdir(parents=True)
    train_tokenizer().save(str(tokenizer_dir / "tokenizer.json"))
    torch.manual_seed(0)
    model = StarCoder2(ModelConfig.from_mapping(OmegaConf.to_container(smoke_cfg.model)))
    (tmp_path / layout.CHECKPOINTS).mkdir(parents=True)
    save_checkpoint(model, tmp_path / layout.CHECKPOINTS)
    write_val_docs(tmp_path, VAL_DOCS)
    return tmp_path


def context(name: str, root: Path, cfg: DictConfig, out_root: Path | None = None) -> StageContext:
    return stage_context(name, cfg, root, out_root)


def test_export_loads_in_transformers_with_the_same_logits(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    hf_dir = built / layout.HF_MODEL
    hf_model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    assert isinstance(hf_model, Starcoder2ForCausalLM)
    assert hf_model.config.model_type == "starcoder2"
    assert (hf_model.config.eos_token_id, hf_model.config.pad_token_id) == (0, 4)

    ours = load_checkpoint(built / layout.CHECKPOINTS)
    input_ids = torch.randint(0, ours.config.vocab_size, (2, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(input_ids=input_ids).logits, ours(input_ids), rtol=1e-5, atol=1e-5)

    hf_tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert (hf_tokenizer.eos_token, hf_tokenizer.bos_token, hf_tokenizer.pad_token) == (
        "<|endoftext|>", "<|endoftext|>", "<fim_pad>")
    source = Tokenizer.from_file(str(built / layout.TOKENIZER / "tokenizer.json"))
    assert hf_tokenizer(VAL_DOCS[0])["input_ids"] == source.encode(VAL_DOCS[0]).ids
    assert hf_tokenizer.decode(source.encode(VAL_DOCS[0]).ids) == VAL_DOCS[0]
    # Every special token is named, so generated text can be shown without them.
    assert set(hf_tokenizer.all_special_tokens) == set(SPECIAL_TOKENS)
    # FIM prompts encode their tokens as single ids, as StarCoder2's infilling expects.
    fim = hf_tokenizer(f"{FIM_PREFIX}def f():{FIM_SUFFIX}    return x{FIM_MIDDLE}")["input_ids"]
    assert [fim[0], fim[-1]] == [SPECIAL_TOKENS.index(FIM_PREFIX), SPECIAL_TOKENS.index(FIM_MIDDLE)]
    assert SPECIAL_TOKENS.index(FIM_SUFFIX) in fim
    redacted = "key = '<KEY>'  # ask <NAME>"
    assert hf_tokenizer.decode(hf_tokenizer(redacted)["input_ids"], skip_special_tokens=True) == "key = ''  # ask "


def test_exported_model_generates_what_starbuild_generates(built: Path, smoke_cfg: DictConfig) -> None:
    from starbuild.model.generate import greedy

    run_export(context("export", built, smoke_cfg))
    hf_model = AutoModelForCausalLM.from_pretrained(built / layout.HF_MODEL).eval()
    ours = load_checkpoint(built / layout.CHECKPOINTS)
    # Trained-like weights: a fresh init's argmax barely depends on the context.
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())) * 0.5)
        hf_model.load_state_dict(ours.state_dict())
    prompt = torch.randint(9, ours.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(5))
    expected = greedy(ours, prompt, max_new_tokens=24)
    generated = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24,
                                  min_new_tokens=24, do_sample=False)
    assert torch.equal(generated, expected)
    assert len(set(expected[:, 12:].flatten().tolist())) > 3, "the continuation should not be one repeated token"
    # With an end-of-text id, rows stop on it and the finished ones keep it.
    stopped = greedy(ours, prompt, max_new_tokens=24, eos_id=int(expected[0, 14]))
    assert stopped.shape[1] <= 36 and stopped[0, 14] == expected[0, 14] and (stopped[0, 15:] == expected[0, 14]).all()


def test_export_is_deterministic_and_atomic(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    run_export(context("export", built, smoke_cfg, out_root=built / "again"))
    first, second = built / layout.HF_MODEL, built / "again" / layout.HF_MODEL
    names = sorted(p.name for p in first.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert str(built) not in "".join((first / n).read_text(errors="ignore") for n in names)
    assert not list((built / "models").glob(".tmp-*"))


def test_export_without_checkpoint_names_train(tmp_path: Path, smoke_cfg: DictConfig) -> None:
    with pytest.raises(StageError, match="dvc repro train"):
        run_export(context("export", tmp_path, smoke_cfg))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("stage", "damaged", "out", "producer"),
    [
        ("export", layout.CHECKPOINTS / "model.safetensors", layout.CHECKPOINTS, "train"),
        ("eval", layout.HF_MODEL / "model.safetensors", layout.HF_MODEL, "export"),
        ("eval", layout.HF_MODEL / layout.TOKENIZER_FILE, layout.HF_MODEL, "export"),
    ],
)
def test_a_damaged_model_input_fails_in_one_line_naming_it(
    built: Path, smoke_cfg: DictConfig, stage: str, damaged: Path, out: Path, producer: str
) -> None:
    run_export(context("export", built, smoke_cfg))
    truncate(built / damaged)
    run = {"export": run_export, "eval": run_eval}[stage]
    with pytest.raises(StageError) as info:
        run(context(stage, built, smoke_cfg))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{out} is not readable (")
    assert message.endswith(f"restore it with `dvc checkout {out}` or rebuild it with `dvc repro -f -s {producer}`")


def test_eval_writes_sane_deterministic_metrics(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    metrics_path = built / layout.metrics_file("eval")
    run_eval(context("eval", built, smoke_cfg))
    first_bytes = metrics_path.read_bytes()
    run_eval(context("eval", built, smoke_cfg))
    assert metrics_path.read_bytes() == first_bytes

    metrics = json.loads(first_bytes)
    assert sorted(metrics) == ["bits_per_byte", "bytes", "environment", "tokens", "val_loss"]
    assert metrics["environment"]["cpu_isa"] == smoke_cfg.runtime.cpu_isa
    seq_length = smoke_cfg.eval.seq_length
    tokenizer = Tokenizer.from_file(str(built / layout.HF_MODEL / "tokenizer.json"))
    # The last document already ends with <|endoftext|>, the others get one appended.
    stream_size = sum(len(tokenizer.encode(t).ids) for t in VAL_DOCS) + len(VAL_DOCS) - 1
    expected_windows = min(smoke_cfg.eval.max_tokens // seq_length, (stream_size - 1) // seq_length)
    assert expected_windows >= 2
    assert metrics["tokens"] == expected_windows * seq_length
    # An untrained model is close to uniform over its vocabulary.
    assert math.isfinite(metrics["val_loss"])
    assert abs(metrics["val_loss"] - math.log(smoke_cfg.model.vocab_size)) < 0.5
    assert metrics["bits_per_byte"] > 0
    assert metrics["bytes"] > metrics["tokens"]
    assert metrics["bits_per_byte"] == pytest.approx(
        metrics["val_loss"] * metrics["tokens"] / math.log(2) / metrics["bytes"], rel=1e-5)


def test_eval_stops_at_max_tokens(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    cfg = OmegaConf.merge(smoke_cfg, {"eval": {"max_tokens": 2 * smoke_cfg.eval.seq_length + 5}})
    run_eval(context("eval", built, cfg))
    metrics = json.loads((built / layout.metrics_file("eval")).read_text(encoding="utf-8"))
    assert metrics["tokens"] == 2 * smoke_cfg.eval.seq_length


def test_eval_fails_clearly_on_too_little_val_text(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    cfg = OmegaConf.merge(smoke_cfg, {"eval": {"seq_length": 100, "max_tokens": 100}})
    for shard in (built / layout.DOCS / "val").iterdir():
        shard.unlink()
    (built / layout.DOCS / "val").rmdir()
    write_val_docs(built, ["x = 1\n", "y = 2\n"])
    with pytest.raises(StageError, match="fewer than eval.seq_length"):
        run_eval(context("eval", built, cfg))


def test_eval_window_longer_than_the_model_fails(built: Path, smoke_cfg: DictConfig) -> None:
    run_export(context("export", built, smoke_cfg))
    too_long = smoke_cfg.model.max_position_embeddings + 1
    cfg = OmegaConf.merge(smoke_cfg, {"eval": {"seq_length": too_long, "max_tokens": 4 * too_long}})
    with pytest.raises(StageError, match="max_position_embeddings"):
        run_eval(context("eval", built, cfg))


def test_token_byte_lengths_add_up_to_the_utf8_bytes() -> None:
    tokenizer = train_tokenizer()
    lengths = token_byte_lengths(tokenizer)
    for text in [*VAL_DOCS, "naïve — 日本語 🙂 <fim_pad>"]:
        ids = tokenizer.encode(text).ids
        assert int(lengths[ids].sum()) == len(text.encode("utf-8")), text


def test_val_stream_appends_one_eos_and_windows_do_not_overlap() -> None:
    tokenizer = train_tokenizer()
    stream = val_token_stream(["a = 1\n", "b<|endoftext|>"], tokenizer, "<|endoftext|>", limit=1000)
    first = tokenizer.encode("a = 1\n").ids
    assert stream.tolist() == [*first, 0, *tokenizer.encode("b").ids, 0]
    assert val_token_stream(["a = 1\n"] * 50, tokenizer, "<|endoftext|>", limit=7).size == 7

    ids = np.arange(23)
    batch = windows(ids, seq_length=5, max_tokens=100)
    assert batch.shape == (4, 6)
    assert batch[:, 1:].flatten().tolist() == list(range(1, 21))
    assert windows(ids, seq_length=5, max_tokens=12).shape == (2, 6)
