"""The eval stage and its parts: perplexity per language, HumanEval in the sandbox, FIM exact match."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from test_export_eval import VAL_DOCS, built, context, train_tokenizer  # noqa: F401  (built is a fixture)
from transformers import AutoModelForCausalLM, AutoTokenizer

from starbuild.core import layout, schemas
from starbuild.core.stage import StageError
from starbuild.eval import fim_eval, humaneval
from starbuild.eval.generation import SamplingConfig, complete, cut_at_stops
from starbuild.eval.perplexity import (
    PerplexityConfig,
    file_windows,
    interleave_languages,
    perplexity_metrics,
    score_windows,
    token_byte_lengths,
)
from starbuild.eval.sandbox import SandboxLimits
from starbuild.eval.stage import run_eval
from starbuild.model.stage import run_export
from starbuild.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from tests.factories import raw_row, write_table

LIMITS = SandboxLimits(timeout_s=10, cpu_s=10, memory_mb=2048, processes=32, file_mb=16)
# Files of the val repositories (org/repo-0 … org/repo-3, from test_export_eval's docs) and of one
# train repository, which eval must not score.
PY = "def area(r):\n    return 3.14159 * r * r  # ½ π r²\n\n\nprint(area(2))\n"
MD = "# Données\n\nUn fichier écrit en *Markdown*, avec des accents.\n"
CLEAN_FILES = [("org/repo-0", "geo.py", "Python", PY), ("org/repo-1", "README.md", "Markdown", MD),
               ("org/repo-2", "util.py", "Python", PY.replace("area", "volume") * 3),
               ("org/repo-3", "notes", None, "plain words only\n"),
               ("org/train-only", "secret.py", "Python", "TRAIN_ONLY = 1\n" * 20)]


@pytest.fixture
def evaluated(built: Path, smoke_cfg: DictConfig) -> Path:  # noqa: F811
    """`built` with the export and a data/clean table holding the files above."""
    run_export(context("export", built, smoke_cfg))
    rows = [raw_row(repo, path, text, language=language, pii_redactions=0)
            for repo, path, language, text in CLEAN_FILES]
    write_table(built / layout.CLEAN, [rows[:2], rows[2:]], schemas.CLEAN)
    return built


def _metrics(root: Path) -> dict:
    return json.loads((root / layout.metrics_file("eval")).read_text(encoding="utf-8"))


def test_eval_writes_deterministic_metrics_and_task_rows(evaluated: Path, smoke_cfg: DictConfig) -> None:
    cfg = OmegaConf.merge(smoke_cfg, {"eval": {"perplexity": {"max_tokens": 100_000}}})
    run_eval(context("eval", evaluated, cfg))
    first = {p: (evaluated / p).read_bytes() for p in (layout.metrics_file("eval"), layout.EVAL_TASKS)}
    run_eval(context("eval", evaluated, cfg))
    assert {p: (evaluated / p).read_bytes() for p in first} == first

    metrics = _metrics(evaluated)
    # Every byte of every val file is scored once: the count is the files' own UTF-8 length.
    val_texts = [text for repo, _, _, text in CLEAN_FILES if repo != "org/train-only"]
    assert metrics["val/bytes"] == sum(len(text.encode("utf-8")) for text in val_texts)
    assert metrics["val/Python/bytes"] == len(PY.encode()) + len(PY.replace("area", "volume").encode()) * 3
    assert metrics["val/Markdown/bytes"] == len(MD.encode()) and metrics["val/unknown/bytes"] == 17
    assert sum(metrics[f"val/{lang}/tokens"] for lang in ("Python", "Markdown", "unknown")) == metrics["val/tokens"]
    # An untrained model is close to uniform over its vocabulary.
    assert abs(metrics["val/loss"] - math.log(smoke_cfg.model.vocab_size)) < 0.5
    assert metrics["val/bits_per_byte"] == pytest.approx(
        metrics["val/loss"] * metrics["val/tokens"] / math.log(2) / metrics["val/bytes"], rel=1e-5)

    limit = smoke_cfg.eval.humaneval.limit
    assert metrics["humaneval/tasks"] == limit and 0.0 <= metrics["humaneval/pass@1"] <= 1.0
    assert metrics["fim/humaneval/tasks"] == smoke_cfg.eval.fim.humaneval_tasks
    assert metrics["fim/val/tasks"] == 4  # one line of each val file
    rows = [json.loads(line) for line in (evaluated / layout.EVAL_TASKS).read_text().splitlines()]
    assert [r["benchmark"] for r in rows] == ["humaneval"] * limit + ["fim/humaneval"] * 4 + ["fim/val"] * 4
    assert all(r["reason"] for r in rows[:limit]) and not any("TRAIN_ONLY" in r["reference"] for r in rows[limit:])
    assert metrics["environment"]["cpu_isa"] == smoke_cfg.runtime.cpu_isa


def test_only_the_files_a_benchmark_uses_are_read(evaluated: Path, smoke_cfg: DictConfig, monkeypatch) -> None:
    """The index holds no texts; perplexity reads the files its token budget reaches, FIM the lines it picks,
    and both give what reading every file gives."""
    from starbuild.eval import held_out, stage

    ctx = context("eval", evaluated, smoke_cfg)
    index = held_out.index_files(ctx, held_out.val_repositories(ctx))
    assert len(index) == 4 and not any(isinstance(v, str) and v in (PY, MD) for f in index for v in vars(f).values())
    read: list[list[str]] = []

    def recording(files):
        read.append([f.name for f in files])
        return held_out.read_texts(files)

    monkeypatch.setattr(stage, "read_texts", recording)
    model = AutoModelForCausalLM.from_pretrained(evaluated / layout.HF_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(evaluated / layout.HF_MODEL)
    small = {"eval": {"perplexity": {"max_tokens": 3, "seq_length": 2}, "fim": {"val_tasks": 2}}}
    cfg = context("eval", evaluated, OmegaConf.merge(smoke_cfg, small)).section("eval", stage.EvalConfig)
    found = stage.run_perplexity(cfg, model, tokenizer, index)
    assert 0 < len(read[-1]) < len(index) and found["val/tokens"] == 3

    # The same windows as from every file's text, in the same interleaved order.
    backend = tokenizer.backend_tokenizer
    everything = interleave_languages([(f.language, t) for f, t in zip(index, held_out.read_texts(index), strict=True)])
    windows = file_windows(everything, backend, tokenizer.eos_token_id, cfg.perplexity)
    expected = perplexity_metrics(score_windows(model, windows, token_byte_lengths(backend), cfg.batch_size,
                                                tokenizer.eos_token_id))
    assert found == expected

    stage.run_fim(cfg, 1, model, tokenizer, index, [])
    assert len(read[-1]) == 2
    assert fim_eval.val_fim_tasks([(f.name, t) for f, t in zip(index, held_out.read_texts(index), strict=True)],
                                  2, 1, cfg.fim.context_chars) == fim_eval.val_fim_tasks(
        list(zip(read[-1], held_out.read_texts([f for f in index if f.name in read[-1]]), strict=True)),
        2, 1, cfg.fim.context_chars)


def test_eval_of_any_hf_directory(evaluated: Path, smoke_cfg: DictConfig, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("models") / "starcoder2-copy"
    shutil.copytree(evaluated / layout.HF_MODEL, elsewhere)
    run_eval(context("eval", evaluated, smoke_cfg))
    expected = _metrics(evaluated)
    shutil.rmtree(evaluated / layout.HF_MODEL)
    run_eval(context("eval", evaluated, OmegaConf.merge(smoke_cfg, {"eval": {"model": str(elsewhere)}})))
    assert _metrics(evaluated) == expected
    with pytest.raises(StageError, match=r"eval.model=.*nowhere is not a Hugging Face causal LM directory"):
        run_eval(context("eval", evaluated, OmegaConf.merge(smoke_cfg, {"eval": {"model": "nowhere"}})))


def test_eval_without_val_text_fails_clearly(evaluated: Path, smoke_cfg: DictConfig) -> None:
    shutil.rmtree(evaluated / layout.CLEAN)
    write_table(evaluated / layout.CLEAN, [[raw_row("org/train-only", "a.py", "x = 1\n", pii_redactions=0)]],
                schemas.CLEAN)
    with pytest.raises(StageError, match="val repositories hold no text"):
        run_eval(context("eval", evaluated, smoke_cfg))


def test_eval_window_longer_than_the_model_fails(evaluated: Path, smoke_cfg: DictConfig) -> None:
    too_long = smoke_cfg.model.max_position_embeddings
    cfg = OmegaConf.merge(smoke_cfg, {"eval": {"perplexity": {"seq_length": too_long, "max_tokens": 4 * too_long}}})
    with pytest.raises(StageError, match="eval.perplexity.seq_length"):
        run_eval(context("eval", evaluated, cfg))


# --- perplexity ------------------------------------------------------------------------------------


def test_loss_matches_transformers_labels_loss(evaluated: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(evaluated / layout.HF_MODEL).eval()
    tokenizer = AutoTokenizer.from_pretrained(evaluated / layout.HF_MODEL)
    files = [("Python", PY * 4), ("Markdown", MD)]
    windows = file_windows(files, tokenizer.backend_tokenizer, 0, PerplexityConfig(seq_length=40, max_tokens=10_000))
    totals = score_windows(model, windows, token_byte_lengths(tokenizer.backend_tokenizer), batch_size=3, pad_id=4)
    expected = 0.0
    with torch.no_grad():
        for window in windows:
            ids = torch.from_numpy(window.ids)[None]
            expected += float(model(input_ids=ids, labels=ids).loss) * (len(window.ids) - 1)
    assert totals["all"].nll == pytest.approx(expected, rel=1e-5)
    assert totals["all"].bytes == sum(len(text.encode("utf-8")) for _, text in files)
    assert totals["Markdown"].tokens == len(tokenizer.backend_tokenizer.encode(MD).ids)
    assert set(perplexity_metrics(totals)) >= {"val/loss", "val/Python/bits_per_byte", "val/Markdown/tokens"}


def test_windows_cover_each_file_once_after_one_end_of_text() -> None:
    tokenizer = train_tokenizer()
    ids = tokenizer.encode(PY * 3).ids
    windows = file_windows([("Python", PY * 3)], tokenizer, 0, PerplexityConfig(seq_length=16, max_tokens=10_000))
    assert windows[0].ids[0] == 0 and np.concatenate([w.ids[1:] for w in windows]).tolist() == ids
    assert all(len(w.ids) == 17 for w in windows[:-1])
    capped = file_windows([("Python", PY * 3)], tokenizer, 0, PerplexityConfig(seq_length=16, max_tokens=20))
    assert [len(w.ids) - 1 for w in capped] == [16, 4]


def test_languages_are_interleaved() -> None:
    files = [("Python", "a"), ("Python", "b"), ("C", "c"), (None, "d"), ("Python", "e")]
    assert [text for _, text in interleave_languages(files)] == ["c", "a", "d", "b", "e"]


def test_token_byte_lengths_add_up_to_the_utf8_bytes() -> None:
    tokenizer = train_tokenizer()
    lengths = token_byte_lengths(tokenizer)
    for text in [*VAL_DOCS, "naïve — 日本語 🙂 <fim_pad>"]:
        ids = tokenizer.encode(text).ids
        assert int(lengths[ids].sum()) == len(text.encode("utf-8")), text


# --- HumanEval -------------------------------------------------------------------------------------


def test_canonical_solutions_pass_and_empty_completions_fail() -> None:
    tasks = humaneval.load_tasks()
    assert len(tasks) == 164
    metrics, rows = humaneval.score(tasks, [[humaneval.canonical_completion(t)] for t in tasks], [1], LIMITS)
    assert metrics == {"humaneval/tasks": 164, "humaneval/pass@1": 1.0}, [r for r in rows if not r["passed"]][:2]
    metrics, rows = humaneval.score(tasks[:20], [[""] for _ in range(20)], [1], LIMITS)
    assert metrics["humaneval/pass@1"] == 0.0 and all(r["reason"].startswith("failed: ") for r in rows)


def test_prompt_is_stripped_as_bigcode_did() -> None:
    for task in humaneval.load_tasks():
        prompt = humaneval.prompt_of(task)
        assert task["prompt"].endswith("\n") and not prompt.endswith("\n") and prompt == task["prompt"].strip()
        assert humaneval.program(task, "X").startswith(prompt + "X\n")


@pytest.mark.parametrize(("n", "c", "k"), [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (20, 0, 10), (20, 15, 10),
                                           (200, 17, 100)])
def test_pass_at_k_is_the_closed_form(n: int, c: int, k: int) -> None:
    assert humaneval.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_averages_over_samples() -> None:
    tasks = humaneval.load_tasks(2)
    good = [humaneval.canonical_completion(t) for t in tasks]
    completions = [[good[0], "", ""], ["", "", ""]]
    metrics, rows = humaneval.score(tasks, completions, [1, 2], LIMITS)
    assert metrics["humaneval/pass@1"] == pytest.approx((1 / 3) / 2, abs=1e-6)
    assert metrics["humaneval/pass@2"] == pytest.approx((2 / 3) / 2, abs=1e-6)
    assert [(r["task_id"], r["sample"], r["passed"]) for r in rows][:3] == [
        ("HumanEval/0", 0, True), ("HumanEval/0", 1, False), ("HumanEval/0", 2, False)]


# --- generation ------------------------------------------------------------------------------------


@pytest.fixture
def hf_pair(evaluated: Path) -> tuple:
    model = AutoModelForCausalLM.from_pretrained(evaluated / layout.HF_MODEL).eval()
    with torch.no_grad():  # trained-like weights, so the argmax depends on the context
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())) * 0.5)
    return model, AutoTokenizer.from_pretrained(evaluated / layout.HF_MODEL)


PROMPTS = ["def add(a, b):\n", "import os\nimport sys\n\nclass Config:\n    def load(self, path):\n        ", "x = ["]


def test_greedy_is_the_same_batched_or_not_and_with_or_without_cache(hf_pair: tuple) -> None:
    model, tokenizer = hf_pair
    greedy = SamplingConfig(max_new_tokens=12)
    batched = complete(model, tokenizer, PROMPTS, greedy, [], batch_size=8, seed=0)
    single = complete(model, tokenizer, PROMPTS, greedy, [], batch_size=1, seed=0)
    uncached = complete(model, tokenizer, PROMPTS, greedy, [], batch_size=8, seed=0, use_cache=False)
    assert [g.completions for g in batched] == [g.completions for g in single] == [g.completions for g in uncached]
    assert all(len(g.completions) == 1 and g.completions[0] for g in batched)


def test_sampling_is_seeded_and_gives_n_samples(hf_pair: tuple) -> None:
    model, tokenizer = hf_pair
    sampled = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=0.95, n_samples=3)
    first = complete(model, tokenizer, PROMPTS, sampled, [], batch_size=6, seed=7)
    assert [g.completions for g in first] == [g.completions for g in complete(model, tokenizer, PROMPTS, sampled,
                                                                                [], batch_size=6, seed=7)]
    assert all(len(g.completions) == 3 for g in first)
    assert len({text for g in first for text in g.completions}) > 3


def test_stops_cut_the_completion_and_long_prompts_keep_their_end(hf_pair: tuple) -> None:
    model, tokenizer = hf_pair
    free = complete(model, tokenizer, PROMPTS[:1], SamplingConfig(max_new_tokens=20), [], 4, 0)[0].completions[0]
    stop = free[3:5]
    cut = complete(model, tokenizer, PROMPTS[:1], SamplingConfig(max_new_tokens=20), [stop], 4, 0)[0]
    assert cut.completions[0] == cut_at_stops(free, [stop]) and stop not in cut.completions[0]
    assert cut_at_stops("a\ndef b\nclass c", ["\nclass", "\ndef"]) == "a"
    assert cut_at_stops("abc", ["z"]) == "abc"
    long = complete(model, tokenizer, ["x = 1\n" * 400], SamplingConfig(max_new_tokens=4), [], 4, 0)[0]
    assert long.truncated and not complete(model, tokenizer, PROMPTS[:1], SamplingConfig(max_new_tokens=4), [], 4,
                                          0)[0].truncated


def test_sampling_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="n_samples=2"):
        SamplingConfig(max_new_tokens=4, n_samples=2)
    with pytest.raises(ValueError, match="k=5"):
        humaneval.HumanEvalConfig(k=[5])


# --- FIM -------------------------------------------------------------------------------------------


def test_line_tasks_cut_around_each_non_blank_line() -> None:
    text = "a = 1\n\n    b = 2\nc = 3"
    tasks = fim_eval.line_tasks("val", "f", text, 0, context_chars=100)
    assert [t.middle for t in tasks] == ["a = 1", "    b = 2", "c = 3"]
    assert all(t.prefix + t.middle + t.suffix == text for t in tasks)
    assert tasks[1].prompt() == f"{FIM_PREFIX}a = 1\n\n{FIM_SUFFIX}\nc = 3{FIM_MIDDLE}"
    assert fim_eval.line_tasks("val", "f", text, 0, context_chars=2)[1].prefix == "\n\n"


def test_humaneval_fim_lines_come_from_solutions_only() -> None:
    problems = humaneval.load_tasks(3)
    tasks = fim_eval.humaneval_fim_tasks(problems, 1000, seed=1, context_chars=10_000)
    for task in tasks:
        problem = problems[int(task.task_id.split("/")[1].split("#")[0])]
        assert task.prefix.startswith(humaneval.prompt_of(problem)) and task.middle in problem["canonical_solution"]
    assert fim_eval.humaneval_fim_tasks(problems, 5, 1, 100) == fim_eval.humaneval_fim_tasks(problems, 5, 1, 100)
    assert len(fim_eval.humaneval_fim_tasks(problems, 5, 1, 100)) == 5


def test_fim_exact_match_and_context_fitting() -> None:
    task = fim_eval.FimTask("val", "f#L1", "x" * 100, "y = 2", "z" * 100)
    fitted, shortened = fim_eval.fit_context(task, len, limit=60)
    assert shortened and len(fitted.prompt()) <= 60 and fitted.middle == "y = 2"
    assert fitted.prefix == "x" * len(fitted.prefix) and fitted.suffix == "z" * len(fitted.suffix)
    assert fim_eval.fit_context(task, len, limit=10_000) == (task, False)
    metrics, rows = fim_eval.score([task, task], ["  y = 2 ", "y = 3"])
    assert metrics["fim/val/exact_match"] == 0.5 and [r["exact_match"] for r in rows] == [True, False]
