"""Stage `eval`: val loss and bits per byte of models/hf on the val split -> metrics/eval.json."""

from __future__ import annotations

import logging

from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext, StageError
from starbuild.determinism import environment, pin_stage
from starbuild.eval.val_loss import (
    EvalConfig,
    iter_val_texts,
    score_windows,
    token_byte_lengths,
    val_token_stream,
    windows,
)

log = logging.getLogger(__name__)

def run_eval(ctx: StageContext) -> None:
    """Score the exported model on non-overlapping windows of the val token stream."""
    cfg = ctx.section("eval", EvalConfig)
    pin_stage(ctx, cfg.device)
    seq_length, max_tokens, batch_size = cfg.seq_length, cfg.max_tokens, cfg.batch_size
    val_shards = ctx.input_shards(layout.DOCS / layout.VAL, schemas.DOCS)
    with ctx.reading(layout.HF_MODEL) as hf_dir:
        model = AutoModelForCausalLM.from_pretrained(hf_dir)
        tokenizer = Tokenizer.from_file(str(hf_dir / layout.TOKENIZER_FILE))
    model = model.to(cfg.device).eval()
    if seq_length > model.config.max_position_embeddings:
        raise StageError(f"eval.seq_length {seq_length} exceeds the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}; lower eval.seq_length")
    # The exported config names the end-of-text token; documents are separated by it.
    eos = tokenizer.id_to_token(model.config.eos_token_id)
    try:
        byte_lengths = token_byte_lengths(tokenizer)
        # One id more than the targets: the first token of the stream is only ever an input.
        stream = val_token_stream(iter_val_texts(val_shards), tokenizer, eos,
                                  limit=(max_tokens // seq_length) * seq_length + 1)
    except ValueError as err:
        raise StageError(str(err)) from err
    batches = windows(stream, seq_length, max_tokens)
    if not len(batches):
        raise StageError(f"the val split has {stream.size} tokens, fewer than eval.seq_length + 1 = "
                         f"{seq_length + 1}; lower eval.seq_length or add val repositories")
    log.info("read %s and %d val shards: %d windows of %d tokens", hf_dir, len(val_shards),
             len(batches), seq_length)

    totals = score_windows(model, batches, byte_lengths, batch_size, cfg.device)
    metrics = totals.metrics()
    log.info("val_loss %.4f nats/token, %.4f bits/byte over %d tokens", metrics["val_loss"],
             metrics["bits_per_byte"], metrics["tokens"])
    ctx.write_metrics({**metrics, "environment": environment(cfg.device)})
