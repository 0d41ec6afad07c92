"""Stage `export`: the training checkpoint + tokenizer -> a transformers model directory."""

from __future__ import annotations

import logging
import os

from starbuild.core import layout
from starbuild.core.shards import atomic_output
from starbuild.core.stage import StageContext, StageError
from starbuild.model.checkpoint import load_checkpoint
from starbuild.model.hf import save_hf

log = logging.getLogger(__name__)


def run_export(ctx: StageContext) -> None:
    """Write models/hf (Starcoder2ForCausalLM + tokenizer) from models/checkpoints."""
    with ctx.reading(layout.CHECKPOINTS) as checkpoint_dir:
        model = load_checkpoint(checkpoint_dir)
    tokenizer_file = ctx.input(layout.TOKENIZER / layout.TOKENIZER_FILE)
    log.info("read %s (%d parameters) and %s", checkpoint_dir, model.num_parameters(), tokenizer_file)
    with atomic_output(ctx.output(layout.HF_MODEL)) as tmp:
        try:
            save_hf(model, tokenizer_file, tmp)
        except ValueError as err:
            raise StageError(str(err)) from err
    log.info("wrote %s: %s", ctx.output(layout.HF_MODEL), sorted(os.listdir(ctx.output(layout.HF_MODEL))))
