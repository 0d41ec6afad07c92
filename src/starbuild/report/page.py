"""`reports/index.html`: one self-contained page of what the build made, from the stages' metrics and curves.

Sections, in the order a reader asks: what went in and what is left, what each filter rule removed,
languages and licenses before and after, duplicates, PII and decontamination, the sources beyond files
(notebooks, issues, pull requests) and the training mixture, training, throughput,
the model's scores, and the lineage that rebuilds it. Every figure is inline SVG (charts.py) and every
number comes from metrics/, plots/ or logs/ as written by the stages; nothing is fetched to view it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from starbuild.report.charts import bars, empty_figure, lines, number
from starbuild.report.sources import drop_rows, mixture_rows, source_rows

# Bars beyond this many languages go unlisted (The Stack v2 has 600+); the caption says how many there are.
TOP_LANGUAGES = 25

SECTIONS = (
    ("overview", "Overview"),
    ("funnel", "Filter funnel"),
    ("languages", "Languages"),
    ("licenses", "Licenses"),
    ("dedup", "Duplicates"),
    ("pii", "PII redaction"),
    ("decontamination", "Decontamination"),
    ("sources", "Beyond files and the mixture"),
    ("training", "Training"),
    ("throughput", "Throughput"),
    ("evaluation", "Evaluation"),
    ("lineage", "Lineage"),
)

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#14213d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}nav{padding:8px 32px;background:#e9edf5;position:sticky;top:0}
nav a{margin-right:14px;color:#14213d;text-decoration:none;font-weight:600}
main{padding:8px 32px 40px;max-width:1100px}section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;
padding:12px 20px;margin:16px 0}h2{font-size:18px;margin:4px 0 10px}figure{margin:8px 0 14px}
figcaption{color:#555;margin-bottom:4px}svg text{font-size:11px;fill:#333}svg .value{fill:#555}
svg .axis{stroke:#999}table{border-collapse:collapse;margin:6px 0 12px}td,th{border-bottom:1px solid #eee;
padding:3px 10px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #e3e3e3;border-radius:6px;padding:8px 14px;
min-width:150px}.card b{display:block;font-size:20px}.empty{color:#999;font-style:italic}code{font-size:12px}
"""


@dataclass(frozen=True)
class PageInputs:
    """Everything the page shows, read by the report stage."""

    metrics: Mapping[str, Mapping[str, Any]]
    # Curves by name (train_loss, val_loss, train_lr, tokens_per_s, mfu): (step, value) points.
    curves: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    # Lineage: the checkout the page was built in, every DVC out's md5, params that differ from the defaults.
    commit: str = "unknown"
    outs: Mapping[str, str] = field(default_factory=dict)
    changed_params: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    # The filter rules in config order (metrics files sort their keys).
    rule_order: Sequence[str] = ()


def render_page(inputs: PageInputs) -> str:
    """The whole page as one HTML document."""
    m = inputs.metrics
    bodies = {
        "overview": _overview(m),
        "funnel": _funnel(m.get("filter", {}), inputs.rule_order),
        "languages": _before_after(m.get("pull", {}).get("languages"), m.get("clean", {}).get("languages"),
                                   "languages", "files per language (go-enry)", limit=TOP_LANGUAGES),
        "licenses": _before_after(m.get("pull", {}).get("files_by_license_type"),
                                  m.get("clean", {}).get("license_types"), "licenses", "files per license type"),
        "dedup": _dedup(m.get("dedup", {})),
        "pii": _counts_figure("pii", "redactions per PII type", m.get("clean", {}).get("pii")),
        "decontamination": _counts_figure("decontamination", "files removed per benchmark",
                                          m.get("clean", {}).get("decontaminated")),
        "sources": _sources(m),
        "training": _training(inputs.curves),
        "throughput": _throughput(inputs.curves),
        "evaluation": _evaluation(m.get("eval", {})),
        "lineage": _lineage(inputs),
    }
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{escape(title)}</h2>{bodies[key]}</section>'
                       for key, title in SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>starbuild report</title><style>{_STYLE}</style></head><body>"
            "<header><h1>starbuild report</h1><p>What this build pulled, kept, trained and scored "
            f"(commit <code>{escape(inputs.commit)}</code>)</p></header><nav>{nav}</nav><main>{sections}</main>"
            "</body></html>\n")


def _figure(name: str, caption: str, svg: str) -> str:
    return (f'<figure class="chart" data-figure="{escape(name)}"><figcaption>{escape(caption)}</figcaption>'
            f"{svg}</figure>")


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], metric_keys: Sequence[str | None] = ()) -> str:
    """A table; a row with a metric key marks its value cell `data-metric` so it can be checked."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        key = metric_keys[i] if i < len(metric_keys) else None
        cells = [f"<td>{escape(str(row[0]))}</td>"]
        for value in row[1:]:
            attr = f' data-metric="{escape(key)}" data-value="{value}"' if key is not None else ""
            text = number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
            cells.append(f'<td class="num"{attr}>{escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _overview(m: Mapping[str, Mapping[str, Any]]) -> str:
    pull, filt, dedup, clean = (m.get(k, {}) for k in ("pull", "filter", "dedup", "clean"))
    tokens = m.get("tokenize", {}).get("train", {}).get("tokens")
    cards = [("files pulled", pull.get("files")), ("bytes pulled", pull.get("bytes")),
             ("files after filters", filt.get("kept_files")), ("files after dedup", dedup.get("kept_files")),
             ("files in the dataset", clean.get("files")), ("training tokens", tokens),
             ("HumanEval pass@1", m.get("eval", {}).get("humaneval/pass@1"))]
    return '<div class="cards">' + "".join(
        f'<div class="card" data-metric="{escape(label)}" data-value="{value}"><b>'
        f"{number(value) if value is not None else '–'}</b>{escape(label)}</div>" for label, value in cards) + "</div>"


def _funnel(filt: Mapping[str, Any], order: Sequence[str]) -> str:
    first = filt.get("dropped_first")
    if not first:
        return empty_figure("metrics/filter.json has no funnel: run `dvc repro filter`")
    rules = [r for r in order if r in first] + sorted(r for r in first if r not in order)
    files = [("input", filt["input_files"]), *((r, first[r]["files"]) for r in rules), ("kept", filt["kept_files"])]
    size = [("input", filt["input_bytes"]), *((r, first[r]["bytes"]) for r in rules), ("kept", filt["kept_bytes"])]
    return (_figure("funnel_files", "files removed by each rule (its first failing rule), in rule order",
                    bars(files))
            + _figure("funnel_bytes", "bytes removed by each rule", bars(size)))


def mix(before: Mapping[str, int], after: Mapping[str, Mapping[str, int]]) -> list[tuple[str, int, int]]:
    """(key, files pulled, files in the final dataset) for every key of either, most pulled first."""
    keys = sorted(set(before) | set(after), key=lambda k: (-int(before.get(k, 0)), k))
    return [(k, int(before.get(k, 0)), int(after.get(k, {}).get("files", 0))) for k in keys]


def bits_per_byte_by_language(evaluation: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(language, held-out bits per byte) from eval's `val/<language>/bits_per_byte` metrics, by language."""
    return sorted((k.split("/")[1], v) for k, v in evaluation.items()
                  if k.startswith("val/") and k.count("/") == 2 and k.endswith("/bits_per_byte"))


def _before_after(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, name: str, caption: str,
                  limit: int | None = None) -> str:
    """Grouped bars of files per key as pulled and as in the final dataset (clean's output)."""
    if not before:
        return empty_figure(f"metrics/pull.json has no {name}: run `dvc repro pull`")
    rows = mix(before, after or {})
    shown = rows[:limit] if limit else rows
    note = f" (the {len(shown)} largest of {len(rows)})" if len(shown) < len(rows) else ""
    missing = "" if after else " (metrics/clean.json has no counts yet: run `dvc repro clean`)"
    return _figure(name, f"{caption}: pulled and in the final dataset{note}{missing}",
                   bars([(key, 0) for key, _, _ in shown], series=("pulled", "final"),
                        values=[[pulled, final] for _, pulled, final in shown]))


def _dedup(dedup: Mapping[str, Any]) -> str:
    if not dedup:
        return empty_figure("metrics/dedup.json is missing: run `dvc repro dedup`")
    reasons = list(dedup.get("clusters", {}))
    table = _table([(r, dedup["clusters"][r], dedup["dropped"][r]) for r in reasons],
                   ("reason", "clusters", "files dropped"), [f"dedup.dropped.{r}" for r in reasons])
    sizes = dedup.get("cluster_sizes")
    if sizes is None:
        return table + empty_figure("metrics/dedup.json has no cluster sizes: rerun `dvc repro dedup`")
    all_sizes = sorted({int(s) for per in sizes.values() for s in per})
    if not all_sizes:
        return table + _figure("dedup_clusters", "clusters by size", empty_figure("dedup found no duplicates"))
    values = [[int(sizes[r].get(str(s), 0)) for r in reasons] for s in all_sizes]
    return table + _figure("dedup_clusters", "clusters by size (files per cluster, the kept one included)",
                           bars([(f"{s} files", 0) for s in all_sizes], series=reasons, values=values))


def _counts_figure(name: str, caption: str, counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return empty_figure("metrics/clean.json is missing: run `dvc repro clean`")
    return _figure(name, caption, bars(sorted(counts.items())))


def _sources(m: Mapping[str, Mapping[str, Any]]) -> str:
    rows = source_rows(m)
    if not rows:
        return empty_figure("metrics/notebooks.json and metrics/issues.json are missing: run `dvc repro issues`")
    table = _table(rows, ("source", "read", "documents kept"), [f"source:{name}" for name, _, _ in rows])
    drops = drop_rows(m)
    dropped = _figure("source_drops", "notebooks, issues and pull requests dropped, per reason (rendering, then "
                      "near duplicates, malware and benchmarks)",
                      bars(drops) if drops else empty_figure("nothing was dropped"))
    mixture = mixture_rows(m)
    if not mixture:
        return table + dropped + empty_figure("metrics/mixture.json is missing: run `dvc repro mixture`")
    shares = _table([(name, epochs, docs, tokens, f"{share:.2%}") for name, epochs, docs, tokens, share in mixture],
                    ("mixture source", "epochs", "train documents", "train tokens", "share"))
    return (table + dropped + shares
            + _figure("mixture", "train tokens per mixture source", bars([(n, t) for n, _, _, t, _ in mixture])))


def _training(curves: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    loss = {k: curves[k] for k in ("train_loss", "val_loss") if curves.get(k)}
    lr = {"learning rate": curves["train_lr"]} if curves.get("train_lr") else {}
    return (_figure("loss", "loss (nats per token) by step", lines(loss, "step", "loss"))
            + _figure("learning_rate", "learning rate by step", lines(lr, "step", "learning rate")))


def _throughput(curves: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    tokens = {"tokens/s": curves["tokens_per_s"]} if curves.get("tokens_per_s") else {}
    note = "training tokens per second by step, on the machine that trained (logs/train_throughput.csv)"
    body = _figure("throughput", note, lines(tokens, "step", "tokens/s"))
    if curves.get("mfu"):
        body += _figure("mfu", "model FLOPs utilisation by step", lines({"MFU": curves["mfu"]}, "step", "MFU"))
    return body


def _evaluation(evaluation: Mapping[str, Any]) -> str:
    if not evaluation:
        return empty_figure("metrics/eval.json is missing: run `dvc repro eval`")
    headline = sorted(k for k, v in evaluation.items() if isinstance(v, int | float) and not isinstance(v, bool)
                      and (k.startswith(("humaneval/", "fim/")) or k.count("/") == 1))
    table = _table([(k, evaluation[k]) for k in headline], ("metric", "value"), headline)
    return table + _figure("bits_per_byte", "held-out bits per byte by language (lower is better)",
                           bars(bits_per_byte_by_language(evaluation)))


def _lineage(inputs: PageInputs) -> str:
    outs = _table(sorted(inputs.outs.items()), ("artifact (dvc.lock)", "md5"))
    changed = "<p>Every param is the default.</p>"
    if inputs.changed_params:
        changed = _table([(k, repr(d), repr(v)) for k, (d, v) in sorted(inputs.changed_params.items())],
                         ("param", "default", "this build"))
    return (f"<p>Built at commit <code>{escape(inputs.commit)}</code>. Rebuild with <code>make repro</code> "
            "(or <code>dvc repro</code>) on a checkout of it; every artifact below must come out with the same md5."
            f"</p>{outs}<h3>Params that differ from the defaults</h3>{changed}")
