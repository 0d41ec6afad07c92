"""The speed cost of pinned numerics: training steps of the tiny model, pinned vs torch's defaults.

Each setting runs in its own process (the CPU kernels are chosen once per process), the settings
interleaved and repeated, best time kept. Prints the pinned/unpinned time ratio (1.0 = free).
Run: `make bench` (or `.venv/bin/python bench/bench_pinning.py [STEPS]`).
"""

from __future__ import annotations

import json
import subprocess
import sys

REPEATS = 3
SETTINGS = {
    "unpinned (torch defaults)": None,
    "pinned (runtime: threads 2, avx2)": {"threads": 2, "cpu_isa": "avx2"},
}

WORKER = r"""
import json, sys, time
import torch
from starbuild.determinism import RuntimeConfig, environment, pin
from starbuild.model.starcoder2 import ModelConfig, StarCoder2, next_token_loss

runtime, steps = json.loads(sys.argv[1]), int(sys.argv[2])
if runtime:
    pin(RuntimeConfig(**runtime))
torch.manual_seed(0)
config = ModelConfig(vocab_size=4096, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
net = StarCoder2(config)
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
batch = torch.randint(0, 4096, (8, 257))

def step():
    loss = next_token_loss(net(batch[:, :-1]), batch[:, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

step()  # warm-up: kernel selection and allocations
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"seconds": time.perf_counter() - start, "env": environment()}))
"""


def run(runtime: dict | None, steps: int) -> tuple[float, dict]:
    """Seconds for `steps` training steps in a fresh process, and the environment it ran under."""
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(runtime), str(steps)], capture_output=True,
                         text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["env"]


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    best: dict[str, float] = {}
    envs: dict[str, dict] = {}
    for _ in range(REPEATS):
        for name, runtime in SETTINGS.items():
            seconds, envs[name] = run(runtime, steps)
            best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        env = envs[name]
        print(f"{name:<36} {seconds / steps * 1000:8.1f} ms/step  (threads {env['threads']}, {env['cpu_isa']})")
    unpinned, pinned = best.values()
    print(f"pinned / unpinned time: {pinned / unpinned:.2f}x")


if __name__ == "__main__":
    main()
