"""The StarCoder2 network against transformers' Starcoder2ForCausalLM, and its checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Starcoder2ForCausalLM

from starbuild.model.checkpoint import load_checkpoint, save_checkpoint
from starbuild.model.hf import SpecialIds, from_hf_model, load_hf, to_hf_config
from starbuild.model.starcoder2 import ModelConfig, StarCoder2

IDS = SpecialIds(eos=0, pad=4)


def tiny_config(**overrides: object) -> ModelConfig:
    """A small GQA config: 4 query heads sharing 2 key/value heads."""
    values = dict(vocab_size=97, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rope_theta=10000.0)
    values.update(overrides)
    return ModelConfig(**values)


def randomized(model: StarCoder2, seed: int) -> StarCoder2:
    """Give every parameter (biases and norms too) non-trivial values so each one matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2 + (param == 1) * 1.0)
    return model.eval()


def hf_twin(model: StarCoder2) -> Starcoder2ForCausalLM:
    """transformers' model built from its own config and loaded with `model`'s weights."""
    hf_model = Starcoder2ForCausalLM(to_hf_config(model.config, IDS))
    hf_model.load_state_dict(model.state_dict(), strict=True)
    return hf_model.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_transformers(tied: bool) -> None:
    torch.manual_seed(0)
    model = randomized(StarCoder2(tiny_config(tie_word_embeddings=tied)), seed=1)
    hf_model = hf_twin(model)
    input_ids = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(input_ids)
        theirs = hf_model(input_ids=input_ids).logits
    assert ours.shape == (3, 40, 97)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_logits_match_transformers_eager_attention() -> None:
    """The eager path (explicit repeat_kv + mask) agrees too, not only SDPA against SDPA."""
    model = randomized(StarCoder2(tiny_config()), seed=3)
    hf_model = hf_twin(model)
    hf_model.set_attn_implementation("eager")
    input_ids = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids), hf_model(input_ids=input_ids).logits,
                                   rtol=1e-5, atol=1e-5)


def test_state_dict_keys_match_transformers() -> None:
    model = StarCoder2(tiny_config())
    assert set(model.state_dict()) == set(hf_twin(model).state_dict())


def test_attention_is_causal() -> None:
    model = randomized(StarCoder2(tiny_config()), seed=5)
    input_ids = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(6))
    changed = input_ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 97
    with torch.no_grad():
        before, after = model(input_ids), model(changed)
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_tied_head_shares_the_embedding() -> None:
    model = StarCoder2(tiny_config())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = StarCoder2(tiny_config(tie_word_embeddings=False))
    assert untied.num_parameters() == model.num_parameters() + 97 * 32


def test_config_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="num_key_value_heads"):
        tiny_config(num_key_value_heads=3)
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        tiny_config(hidden_size=30)
    with pytest.raises(ValueError, match="unknown model keys"):
        ModelConfig.from_mapping({**tiny_config().to_dict(), "n_embd": 3})
    assert ModelConfig.from_mapping({**tiny_config().to_dict(), "name": "tiny"}) == tiny_config()


def test_too_long_input_fails() -> None:
    with pytest.raises(ValueError, match="max_position_embeddings"):
        StarCoder2(tiny_config())(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("tied", [True, False])
def test_checkpoint_round_trip_is_exact_and_deterministic(tmp_path: Path, tied: bool) -> None:
    model = randomized(StarCoder2(tiny_config(tie_word_embeddings=tied)), seed=7)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_checkpoint(model, tmp_path / name)
    for file in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    loaded = load_checkpoint(tmp_path / "a")
    assert loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# --- sliding window, dropouts, presets, conversion both ways ---------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("overrides", [
    {"sliding_window": 8},
    {"sliding_window": 8, "use_bias": False, "rope_theta": 123456.0, "tie_word_embeddings": False},
    {"sliding_window": 64, "use_bias": False},
])
def test_sliding_window_and_fields_match_transformers(attn: str, overrides: dict) -> None:
    # Trained-like (non-default) weights, a window shorter than the sequence, no biases, another theta:
    # a field dropped in conversion cannot hide behind a default.
    model = randomized(StarCoder2(tiny_config(**overrides)), seed=5)
    hf_model = hf_twin(model)
    hf_model.set_attn_implementation(attn)
    assert hf_model.config.sliding_window == overrides["sliding_window"]
    assert hf_model.config.rope_parameters["rope_theta"] == model.config.rope_theta
    input_ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids), hf_model(input_ids=input_ids).logits, rtol=1e-5, atol=1e-5)


def test_the_window_limits_what_a_position_sees() -> None:
    model = randomized(StarCoder2(tiny_config(sliding_window=4)), seed=7)
    ids = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(8))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 97
    with torch.no_grad():
        before, after = model(ids), model(changed)
    differs = (before - after).abs().amax(dim=-1)[0] > 1e-6
    # Position 5 reaches positions 5..8 directly, and later ones only through the layers below (2 layers: up to 11).
    assert not differs[:5].any()
    assert differs[5:9].all()
    assert not differs[12:].any()


def test_dropouts_act_only_while_training() -> None:
    config = tiny_config(attention_dropout=0.3, residual_dropout=0.3, embedding_dropout=0.3)
    model = randomized(StarCoder2(config), seed=9)
    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(ids), model(ids))
        model.train()
        assert not torch.equal(model(ids), model(ids))
    # At p = 0 training draws no random numbers, so the generator's state is untouched.
    plain = randomized(StarCoder2(tiny_config()), seed=9).train()
    state = torch.get_rng_state()
    with torch.no_grad():
        plain(ids)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="residual_dropout"):
        tiny_config(residual_dropout=1.0)
    with pytest.raises(ValueError, match="sliding_window"):
        tiny_config(sliding_window=0)


@pytest.mark.parametrize(("preset", "billions"), [("3b", 3.030), ("7b", 7.174), ("15b", 15.958)])
def test_presets_have_the_released_parameter_counts(preset: str, billions: float) -> None:
    from omegaconf import OmegaConf

    from starbuild.core.config import compose
    from tests.conftest import REPO_ROOT

    cfg = compose([f"experiment=starcoder2_{preset}"], conf_dir=REPO_ROOT / "conf")
    config = ModelConfig.from_mapping(OmegaConf.to_container(cfg.model))
    assert (config.vocab_size, config.sliding_window, config.max_position_embeddings) == (49152, 4096, 16384)
    with torch.device("meta"):
        model = StarCoder2(config)
    assert round(model.num_parameters() / 1e9, 3) == billions


def test_weights_convert_both_ways(tmp_path: Path) -> None:
    model = randomized(StarCoder2(tiny_config(sliding_window=8, use_bias=False, rope_theta=5e5,
                                              tie_word_embeddings=False)), seed=11)
    hf_model = hf_twin(model)
    hf_model.save_pretrained(tmp_path / "hf")
    for back in (from_hf_model(hf_model), load_hf(tmp_path / "hf")):
        assert back.config == model.config
        for (name, ours), (_, theirs) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
            assert torch.equal(ours, theirs), name
    with pytest.raises(ValueError, match="not a Hugging Face model directory"):
        load_hf(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/bench_gpu_attention.py runs it)")
def test_flash_attention_matches_sdpa_on_gpu() -> None:
    from starbuild.model import starcoder2

    if starcoder2.flash_attn_func is None:
        pytest.skip("needs flash-attn: pip install -e '.[gpu]'")
    model = randomized(StarCoder2(tiny_config(sliding_window=8)), seed=12).cuda()
    ids = torch.randint(0, 97, (2, 40), device="cuda", generator=torch.Generator("cuda").manual_seed(13))
    flash = starcoder2.flash_attn_func
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with_flash = model(ids).float()
        starcoder2.flash_attn_func = None
        try:
            with_sdpa = model(ids).float()
        finally:
            starcoder2.flash_attn_func = flash
    torch.testing.assert_close(with_flash, with_sdpa, rtol=2e-2, atol=2e-2)
