"""GPU training throughput of a 3B-shaped block stack: flash-attn 2 against PyTorch SDPA, bf16.

The network is conf/model/3b.yaml's shape (3072 wide, 24 heads, 2 key/value heads, sliding window 4096)
cut to LAYERS layers, so it fits any recent GPU; each step is a forward and backward pass of BATCH x SEQ
tokens under bf16 autocast. Both backends run the same weights and inputs; their logits must agree to
bf16 tolerance. Prints tokens/s and MFU (6 x parameters + attention FLOPs per token, against the
device's dense bf16 peak: 989 TFLOP/s for H100/H200, which Lightning's own table misses for the H200).
Without CUDA, or without the `gpu` extra's flash-attn, it says so and exits 0.
Run on a GPU machine: `.venv/bin/pip install -e '.[gpu]' && .venv/bin/python bench/bench_gpu_attention.py`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from starbuild.core.config import compose
from starbuild.model import starcoder2
from starbuild.model.starcoder2 import ModelConfig, StarCoder2, next_token_loss
from starbuild.train.throughput import flops_per_token, peak_flops

ROOT = Path(__file__).resolve().parents[1]
LAYERS, BATCH, SEQ, STEPS, WARMUP = 4, 2, 8192, 12, 3
def step_seconds(model: StarCoder2, ids: torch.Tensor) -> float:
    """Mean seconds of a bf16 forward + backward over STEPS - WARMUP steps."""
    for step in range(STEPS):
        if step == WARMUP:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = next_token_loss(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / (STEPS - WARMUP)


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: this bench needs a GPU (skipped)")
        return
    if starcoder2.flash_attn_func is None:
        print("flash-attn is not installed: `pip install -e '.[gpu]'` (skipped)")
        return
    cfg = compose(["experiment=starcoder2_3b"], conf_dir=ROOT / "conf")
    config = ModelConfig.from_mapping({**OmegaConf.to_container(cfg.model), "num_hidden_layers": LAYERS})
    torch.manual_seed(0)
    model = StarCoder2(config).cuda()
    ids = torch.randint(0, config.vocab_size, (BATCH, SEQ + 1), device="cuda")
    params = model.num_parameters()
    flops = flops_per_token(config, params, SEQ)
    name = torch.cuda.get_device_name()
    peak = peak_flops(name)
    flash = starcoder2.flash_attn_func
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits_flash = model(ids[:1, :2048]).float()
        starcoder2.flash_attn_func = None
        logits_sdpa = model(ids[:1, :2048]).float()
        starcoder2.flash_attn_func = flash
    torch.testing.assert_close(logits_flash, logits_sdpa, rtol=5e-2, atol=5e-2)
    print(f"{name}: {LAYERS} layers of the 3B shape ({params / 1e9:.2f}B parameters), batch {BATCH} x {SEQ} "
          f"tokens, window {config.sliding_window}, bf16 autocast")
    results = {}
    for backend in ("flash-attn", "sdpa"):
        starcoder2.flash_attn_func = flash if backend == "flash-attn" else None
        seconds = step_seconds(model, ids)
        tokens_per_s = BATCH * SEQ / seconds
        results[backend] = tokens_per_s
        mfu = f"MFU {flops * tokens_per_s / peak:.1%}" if peak else "MFU: unknown peak for this device"
        print(f"{backend:10s} {tokens_per_s:10.0f} tokens/s  {mfu}")
    starcoder2.flash_attn_func = flash
    print(f"flash-attn / sdpa: {results['flash-attn'] / results['sdpa']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
