"""Export to a transformers directory and the eval stage on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, Starcoder2ForCausalLM

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.eval.stage import run_eval
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
