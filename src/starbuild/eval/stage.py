"""Stage `eval`: perplexity per language, HumanEval pass@k and FIM exact match of a HF causal LM.

Writes metrics/eval.json (stable names such as `humaneval/pass@1`, `val/Python/bits_per_byte`)
and metrics/eval_tasks.jsonl (one row per completion or infilled line).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from starbuild.core import layout
from starbuild.core.shards import atomic_file
from starbuild.core.stage import StageContext, StageError
from starbuild.determinism import environment, pinned
from starbuild.eval import fim_eval, humaneval
from starbuild.eval.config import EvalConfig
from starbuild.eval.generation import complete
from starbuild.eval.held_out import HeldOutFile, index_files, read_texts, val_repositories
from starbuild.eval.perplexity import (
    file_windows,
    interleave_languages,
    perplexity_metrics,
    score_windows,
    token_byte_lengths,
    tokens_at_least,
)
from starbuild.eval.sandbox import SandboxError

log = logging.getLogger(__name__)

def load_model(ctx: StageContext, cfg: EvalConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    """The model and tokenizer of `eval.model`, or of the DAG's models/hf."""
    if cfg.model is None:
        with ctx.reading(layout.HF_MODEL) as directory:
            return _load(directory, cfg.device), AutoTokenizer.from_pretrained(directory), directory
    directory = Path(cfg.model) if Path(cfg.model).is_absolute() else ctx.root / cfg.model
    try:
        return _load(directory, cfg.device), AutoTokenizer.from_pretrained(directory), directory
    except (OSError, ValueError) as err:
        raise StageError(f"eval.model={cfg.model} is not a Hugging Face causal LM directory ({err}); "
                         "give a local directory with config.json, weights and tokenizer files") from err


def _load(directory: Path, device: str) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(directory).to(device).eval()


def run_perplexity(cfg: EvalConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   files: list[HeldOutFile]) -> dict[str, Any]:
    """Loss and bits per byte of the val files, overall and per language."""
    if cfg.perplexity.seq_length >= model.config.max_position_embeddings:
        raise StageError(f"eval.perplexity.seq_length {cfg.perplexity.seq_length} needs a model of more than that "
                         f"many positions ({model.config.max_position_embeddings}); lower it")
    backend = tokenizer.backend_tokenizer
    try:
        byte_lengths = token_byte_lengths(backend)
    except ValueError as err:
        raise StageError(str(err)) from err
    # Only the files the token budget can reach are read: each has at least tokens_at_least tokens.
    longest, reached, needed = int(byte_lengths.max(initial=1)), 0, []
    for _, f in interleave_languages([(f.language, f) for f in files]):
        if reached >= cfg.perplexity.max_tokens:
            break
        needed.append(f)
        reached += tokens_at_least(f.n_bytes, longest)
    texts = zip((f.language for f in needed), read_texts(needed), strict=True)
    windows = file_windows(texts, backend, tokenizer.eos_token_id, cfg.perplexity)
    if not windows:
        raise StageError("the val repositories hold no text to score; add origins or lower format.val_fraction")
    metrics = perplexity_metrics(score_windows(model, windows, byte_lengths, cfg.batch_size, tokenizer.eos_token_id))
    log.info("val: %.4f nats/token, %.4f bits/byte over %d tokens in %d windows", metrics["val/loss"],
             metrics["val/bits_per_byte"], metrics["val/tokens"], len(windows))
    return metrics


def run_humaneval(cfg: EvalConfig, seed: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  problems: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Complete HumanEval's prompts and run the completions against the tests in the sandbox."""
    settings = cfg.humaneval
    tasks = problems[: settings.limit] if settings.limit else problems
    with tqdm(total=len(tasks), desc="humaneval: generate", unit="task") as bar:
        generated = complete(model, tokenizer, [humaneval.prompt_of(task) for task in tasks], settings.sampling,
                             settings.stop, cfg.batch_size, seed, progress=bar.update)
    runs = len(tasks) * settings.sampling.n_samples
    with tqdm(total=runs, desc="humaneval: execute", unit="program") as bar:
        try:
            metrics, rows = humaneval.score(tasks, [g.completions for g in generated], settings.k, cfg.sandbox,
                                            progress=bar.update)
        except SandboxError as err:
            raise StageError(str(err)) from err
    metrics["humaneval/truncated_prompts"] = sum(g.truncated for g in generated)
    log.info("humaneval: %s", ", ".join(f"{key} {value}" for key, value in metrics.items()))
    return metrics, rows


def run_fim(cfg: EvalConfig, seed: int, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
            files: list[HeldOutFile],
            problems: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Infill single lines of HumanEval's solutions and of held-out files; exact match."""
    settings = cfg.fim
    # The files with a line to infill are the candidates; only the chosen ones' texts are read.
    candidates = [f for f in files if f.has_fim_line]
    chosen = [candidates[i] for i in fim_eval.chosen_indices(len(candidates), settings.val_tasks, seed)]
    held_out = list(zip((f.name for f in chosen), read_texts(chosen), strict=True))
    tasks = (fim_eval.humaneval_fim_tasks(problems, settings.humaneval_tasks, seed,
                                          settings.context_chars)
             + fim_eval.val_fim_tasks(held_out, settings.val_tasks, seed, settings.context_chars))
    limit = model.config.max_position_embeddings - settings.sampling.max_new_tokens

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    fitted = [fim_eval.fit_context(task, count, limit) for task in tasks]
    tasks = [task for task, _ in fitted]
    with tqdm(total=len(tasks), desc="fim: generate", unit="task") as bar:
        generated = complete(model, tokenizer, [task.prompt() for task in tasks], settings.sampling, settings.stop,
                             cfg.batch_size, seed, progress=bar.update)
    metrics, rows = fim_eval.score(tasks, [g.completions[0] for g in generated])
    metrics["fim/shortened_contexts"] = sum(shortened for _, shortened in fitted)
    log.info("fim: %s", ", ".join(f"{key} {value}" for key, value in metrics.items()))
    return metrics, rows


def run_eval(ctx: StageContext) -> None:
    """Evaluate the model; write metrics/eval.json and the per-task rows."""
    cfg = ctx.section("eval", EvalConfig)
    with pinned(ctx, cfg.device):
        eval_pinned(ctx, cfg)


def eval_pinned(ctx: StageContext, cfg: EvalConfig) -> None:
    """run_eval once threads, kernels and cores are pinned."""
    seed = int(ctx.cfg.seed)
    model, tokenizer, directory = load_model(ctx, cfg)
    if tokenizer.eos_token_id is None:
        raise StageError(f"{directory}'s tokenizer names no eos_token; eval needs one to separate files")
    files = index_files(ctx, val_repositories(ctx))
    log.info("evaluating %s on %d held-out files", directory, len(files))

    metrics: dict[str, Any] = run_perplexity(cfg, model, tokenizer, files)
    rows: list[dict[str, Any]] = []
    # Read once: HumanEval's problems feed both pass@k and the FIM lines.
    problems = humaneval.load_tasks()
    if cfg.humaneval.enabled:
        found, task_rows = run_humaneval(cfg, seed, model, tokenizer, problems)
        metrics |= found
        rows += task_rows
    if cfg.fim.enabled:
        found, task_rows = run_fim(cfg, seed, model, tokenizer, files, problems)
        metrics |= found
        rows += task_rows
    with atomic_file(ctx.output(layout.EVAL_TASKS)) as tmp:
        tmp.write_text("".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows),
                       encoding="utf-8")
    ctx.write_metrics({**metrics, "environment": environment(cfg.device)})
