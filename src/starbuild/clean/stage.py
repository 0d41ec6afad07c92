"""The `clean` stage: redact email addresses in every file, counting what was redacted."""

from __future__ import annotations

import functools
import logging

import pyarrow as pa

from starbuild.clean.pii import CleanConfig, redact_emails
from starbuild.core import layout, schemas
from starbuild.core.stage import StageContext
from starbuild.executors import make_executor
from starbuild.shards.pipeline import transform_shards

log = logging.getLogger(__name__)


def clean_table(table: pa.Table, placeholder: str) -> tuple[pa.Table, dict[str, int]]:
    """`table` with every email in `content` replaced by `placeholder`, and the shard's counts."""
    contents, redactions = [], []
    for text in table.column("content").to_pylist():
        if text is None:
            contents.append(None)
            redactions.append(0)
            continue
        redacted, n = redact_emails(text, placeholder)
        contents.append(redacted)
        redactions.append(n)
    # length_bytes stays the size of the original blob: it is a Stack v2 column describing the
    # SWH content (like blob_id, which also still names the unredacted bytes), not `content`.
    index = table.schema.get_field_index("content")
    table = table.set_column(index, "content", pa.array(contents, pa.large_string()))
    table = table.append_column("pii_redactions", pa.array(redactions, pa.int32()))
    return table.select(schemas.CLEAN.names).cast(schemas.CLEAN), {
        "files": table.num_rows,
        "files_with_emails": sum(n > 0 for n in redactions),
        "emails_redacted": sum(redactions),
    }


def run_clean(ctx: StageContext) -> None:
    """Write data/clean/: data/dedup/ with emails replaced by the placeholder, shard for shard."""
    placeholder = ctx.section("clean", CleanConfig).email_placeholder
    executor = make_executor(ctx.cfg.executor)
    shards = ctx.input_shards(layout.DEDUP, schemas.DEDUP)
    log.info("redacting emails in %d shards from %s", len(shards), layout.DEDUP)
    metrics = transform_shards(
        shards, ctx.output(layout.CLEAN), functools.partial(clean_table, placeholder=placeholder), executor,
        desc="clean",
    )
    log.info(
        "redacted %d emails in %d of %d files -> %s",
        metrics["emails_redacted"],
        metrics["files_with_emails"],
        metrics["files"],
        ctx.output(layout.CLEAN),
    )
    ctx.write_metrics(metrics)
