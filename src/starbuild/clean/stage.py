"""The `clean` stage: redact email addresses in every file, counting what was redacted."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from starbuild.clean.pii import redact_emails
from starbuild.core import layout, schemas
from starbuild.core.shards import atomic_output, read_shard, write_shard
from starbuild.core.stage import StageContext, StageError
from starbuild.shards.executor import map_shards

log = logging.getLogger(__name__)


def clean_shard(task: tuple[str, str, str]) -> dict[str, int]:
    """Redact one shard into its output path; return its counts (runs in a worker process)."""
    src, dst, placeholder = task
    table = read_shard(Path(src))
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
    write_shard(table.select(schemas.CLEAN.names).cast(schemas.CLEAN), Path(dst))
    return {
        "files": table.num_rows,
        "files_with_emails": sum(n > 0 for n in redactions),
        "emails_redacted": sum(redactions),
    }


def run_clean(ctx: StageContext) -> None:
    """Write data/clean/: data/dedup/ with emails replaced by the placeholder, shard for shard."""
    placeholder = ctx.cfg.clean.email_placeholder
    if not isinstance(placeholder, str):
        raise StageError('clean.email_placeholder must be a string, e.g. "<EMAIL>" (conf/clean/)')
    shards = ctx.input_shards(layout.DEDUP, schemas.DEDUP)
    log.info("redacting emails in %d shards from %s", len(shards), layout.DEDUP)
    with atomic_output(ctx.output(layout.CLEAN)) as tmp:
        tasks = [(str(shard), str(tmp / shard.name), placeholder) for shard in shards]
        per_shard = map_shards(clean_shard, tasks, ctx.cfg.executor, desc="clean")
    metrics = {key: sum(counts[key] for counts in per_shard) for key in per_shard[0]}
    log.info(
        "redacted %d emails in %d of %d files -> %s",
        metrics["emails_redacted"],
        metrics["files_with_emails"],
        metrics["files"],
        layout.CLEAN,
    )
    ctx.write_metrics(metrics)
