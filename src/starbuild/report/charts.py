"""Inline SVG charts for the report page: bars and lines, drawn here so the page needs no network or script.

Every mark carries its label and value as `data-label` / `data-value` (and a `<title>` tooltip), so the
numbers a figure shows can be read back from the page and checked against the metrics they came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# One colour per series, readable on white and for the common colour-vision deficiencies (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_BAR_HEIGHT = 16
_LABEL_WIDTH = 190
_PLOT_WIDTH = 520
_VALUE_WIDTH = 110


def number(value: float) -> str:
    """A figure as the page prints it: integers with thousands separators, others to 4 significant digits."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4g}"


def empty_figure(message: str) -> str:
    """What a figure shows when its data is missing (a stage that did not run, a metric not written)."""
    return f'<p class="empty">{escape(message)}</p>'


def bars(rows: Sequence[tuple[str, float]], series: Sequence[str] = ("value",),
         values: Sequence[Sequence[float]] | None = None) -> str:
    """Horizontal bars, one group per row label, one bar per series (`values[i][s]`, else `rows[i][1]`)."""
    if not rows:
        return empty_figure("no data")
    table = [list(v) for v in values] if values is not None else [[value] for _, value in rows]
    top = max((v for group in table for v in group), default=0) or 1
    group_height = _BAR_HEIGHT * len(series) + 6
    height = group_height * len(rows) + (22 if len(series) > 1 else 4)
    width = _LABEL_WIDTH + _PLOT_WIDTH + _VALUE_WIDTH
    marks = []
    for i, ((label, _), group) in enumerate(zip(rows, table, strict=True)):
        y0 = i * group_height
        marks.append(f'<text x="{_LABEL_WIDTH - 6}" y="{y0 + group_height / 2 + 4:.1f}" text-anchor="end">'
                     f"{escape(label)}</text>")
        for s, (name, value) in enumerate(zip(series, group, strict=True)):
            y = y0 + s * _BAR_HEIGHT
            length = max(0.0, value) / top * _PLOT_WIDTH
            marks.append(
                f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{_BAR_HEIGHT - 2}" '
                f'fill="{PALETTE[s % len(PALETTE)]}" data-label="{escape(label)}" data-series="{escape(name)}" '
                f'data-value="{value}"><title>{escape(label)} ({escape(name)}): {number(value)}</title></rect>'
                f'<text class="value" x="{_LABEL_WIDTH + length + 4:.1f}" y="{y + _BAR_HEIGHT - 4}">'
                f"{number(value)}</text>")
    if len(series) > 1:
        marks.append(_legend(series, height - 6))
    return f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{"".join(marks)}</svg>'


def lines(series: Mapping[str, Sequence[tuple[float, float]]], x_label: str, y_label: str) -> str:
    """A line chart of one or more (x, y) series on shared axes, with a point mark per value."""
    points = [p for values in series.values() for p in values]
    if not points:
        return empty_figure("no data")
    width, height, left, bottom, top_pad = 680, 260, 64, 36, 12
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > min(0.0, min(ys)) else 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - 16),
                top_pad + (1 - (y - y0) / (y1 - y0)) * (height - top_pad - bottom))

    marks = [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 16}" y2="{height - bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top_pad}" x2="{left}" y2="{height - bottom}"/>',
             f'<text x="{(width + left) / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="12" y="{(height - bottom) / 2}" transform="rotate(-90 12 {(height - bottom) / 2})" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    for value, anchor in ((y0, "start"), (y1, "start")):
        marks.append(f'<text class="tick" x="4" y="{at(x0, value)[1] + 4:.1f}" text-anchor="{anchor}">'
                     f"{number(value)}</text>")
    for value in (x0, x1):
        marks.append(f'<text class="tick" x="{at(value, y0)[0]:.1f}" y="{height - bottom + 14}" '
                     f'text-anchor="middle">{number(value)}</text>')
    for s, (name, values) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{at(x, y)[0]:.1f},{at(x, y)[1]:.1f}"
                        for i, (x, y) in enumerate(values))
        marks.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        marks += [f'<circle class="point" cx="{at(x, y)[0]:.1f}" cy="{at(x, y)[1]:.1f}" r="2.5" fill="{colour}" '
                  f'data-series="{escape(name)}" data-label="{number(x)}" data-value="{y}">'
                  f"<title>{escape(name)} at {number(x)}: {number(y)}</title></circle>" for x, y in values]
    if len(series) > 1:
        marks.append(_legend(list(series), top_pad + 8, x=width - 200))
    return f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">{"".join(marks)}</svg>'


def _legend(names: Sequence[str], y: float, x: float = _LABEL_WIDTH) -> str:
    items = []
    for s, name in enumerate(names):
        left = x + s * 120
        items.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{PALETTE[s % len(PALETTE)]}"/>'
                     f'<text x="{left + 14}" y="{y}">{escape(name)}</text>')
    return f'<g class="legend">{"".join(items)}</g>'
