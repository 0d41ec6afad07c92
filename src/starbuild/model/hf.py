"""Conversion to transformers: Starcoder2Config, Starcoder2ForCausalLM and a loadable directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, Starcoder2Config, Starcoder2ForCausalLM

from starbuild.model.starcoder2 import HIDDEN_ACT, ModelConfig, StarCoder2
from starbuild.special_tokens import END_OF_TEXT, FIM_PAD, SPECIAL_TOKENS


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens the HF config names."""

    eos: int
    pad: int


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
    """Look up the eos and pad ids in a tokenizer; fail if it lacks StarCoder2's special tokens."""
    # StarCoder2's conventions: <|endoftext|> opens, ends and stands in for unknown text; the FIM pad
    # token is the one special token that never carries content, so it pads batches.
    ids = {name: tokenizer.token_to_id(name) for name in (END_OF_TEXT, FIM_PAD)}
    missing = sorted(name for name, value in ids.items() if value is None)
    if missing:
        raise ValueError(f"tokenizer has no {missing}; rebuild it with `dvc repro tokenizer`")
    return SpecialIds(eos=ids[END_OF_TEXT], pad=ids[FIM_PAD])


def to_hf_config(config: ModelConfig, ids: SpecialIds) -> Starcoder2Config:
    """The transformers config describing the same network."""
    return Starcoder2Config(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        hidden_act=HIDDEN_ACT,
        max_position_embeddings=config.max_position_embeddings,
        initializer_range=config.initializer_range,
        norm_epsilon=config.norm_epsilon,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)},
        sliding_window=config.sliding_window,
        attention_dropout=config.attention_dropout,
        residual_dropout=config.residual_dropout,
        embedding_dropout=config.embedding_dropout,
        use_bias=config.use_bias,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=ids.eos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
    )


def from_hf_config(hf: Starcoder2Config) -> ModelConfig:
    """Our config of a transformers Starcoder2Config; an architecture this file cannot express fails."""
    if hf.hidden_act != HIDDEN_ACT:
        raise ValueError(f"hidden_act {hf.hidden_act!r} is not {HIDDEN_ACT!r}, the only activation StarCoder2 uses")
    # transformers 5 reads an older config.json's rope_theta into rope_parameters.
    rope = hf.rope_parameters
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope} is not supported; only plain RoPE")
    return ModelConfig(
        vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size,
        num_hidden_layers=hf.num_hidden_layers, num_attention_heads=hf.num_attention_heads,
        num_key_value_heads=hf.num_key_value_heads, max_position_embeddings=hf.max_position_embeddings,
        rope_theta=float(rope["rope_theta"]), norm_epsilon=hf.norm_epsilon, use_bias=hf.use_bias,
        tie_word_embeddings=hf.tie_word_embeddings, initializer_range=hf.initializer_range,
        sliding_window=hf.sliding_window, attention_dropout=hf.attention_dropout,
        residual_dropout=hf.residual_dropout, embedding_dropout=hf.embedding_dropout,
    )


def from_hf_model(hf_model: Starcoder2ForCausalLM) -> StarCoder2:
    """A StarCoder2 carrying a transformers model's weights (the state dict keys are identical)."""
    model = StarCoder2(from_hf_config(hf_model.config))
    model.load_state_dict(hf_model.state_dict(), strict=True)
    return model


def load_hf(directory: Path) -> StarCoder2:
    """A local Hugging Face StarCoder2 checkpoint directory (config.json + safetensors) as a StarCoder2."""
    if not (Path(directory) / "config.json").is_file():
        raise ValueError(f"{directory} is not a Hugging Face model directory (no config.json)")
    hf_model = Starcoder2ForCausalLM.from_pretrained(directory, dtype=torch.float32)
    if hf_model.config.model_type != "starcoder2":
        raise ValueError(f"{directory} holds a {hf_model.config.model_type} model, not starcoder2")
    return from_hf_model(hf_model)


# What may differ between a run's config and the checkpoint it starts from: training choices, not shape.
NOT_SHAPE = ("attention_dropout", "residual_dropout", "embedding_dropout", "init_from", "initializer_range")


def shape_mismatches(ours: ModelConfig, theirs: ModelConfig) -> list[str]:
    """`field: ours vs theirs` for every shape field on which two configs differ."""
    return [f"{name}: {getattr(ours, name)} vs {getattr(theirs, name)}" for name in ours.to_dict()
            if name not in NOT_SHAPE and getattr(ours, name) != getattr(theirs, name)]


def to_hf_model(model: StarCoder2, ids: SpecialIds) -> Starcoder2ForCausalLM:
    """A Starcoder2ForCausalLM carrying `model`'s weights (the state dict keys are identical)."""
    hf_model = Starcoder2ForCausalLM(to_hf_config(model.config, ids))
    hf_model.load_state_dict(model.state_dict(), strict=True)
    return hf_model.eval()


def to_hf_tokenizer(tokenizer_file: Path, ids: SpecialIds, max_length: int) -> PreTrainedTokenizerFast:
    """The transformers tokenizer over our tokenizer.json, with its special tokens named."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    eos = tokenizer.id_to_token(ids.eos)
    named = {eos, tokenizer.id_to_token(ids.pad)}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=eos,
        eos_token=eos,
        unk_token=eos,
        pad_token=tokenizer.id_to_token(ids.pad),
        # The rest, as StarCoder2's tokenizer_config.json lists them, so decode(skip_special_tokens=True) drops them.
        additional_special_tokens=[token for token in SPECIAL_TOKENS
                                   if token not in named and tokenizer.token_to_id(token) is not None],
        model_max_length=max_length,
    )


def save_hf(model: StarCoder2, tokenizer_file: Path, directory: Path) -> None:
    """Write a directory that AutoModelForCausalLM and AutoTokenizer load."""
    ids = special_ids(Tokenizer.from_file(str(tokenizer_file)))
    to_hf_model(model, ids).save_pretrained(directory)
    to_hf_tokenizer(tokenizer_file, ids, model.config.max_position_embeddings).save_pretrained(directory)
