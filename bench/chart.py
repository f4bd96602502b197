"""The bench's results drawn as one SVG: ours against the plain recipe per figure, and the trend across runs.

    python bench/chart.py docs/bench/*.json -o docs/bench/chart.svg

Top: per headline figure, ours as a ratio of the plain recipe (plain = 1; green where ours is better,
orange where it is worse), from the newest run that measured that figure (named beside the bar, with
both values). Below, the runs oldest first: the cold deploy of ours and of plain and the no-op re-run
(seconds), and ours' requests/s as a ratio of plain's per operation. Older JSONs lack some figures: a
series leaves those runs out. A hollow point is a --ci run (ours' deploy beside the plain install).

Plain SVG written here rather than matplotlib: no dependency for the bench (matplotlib brings numpy,
pillow and fonts into the venv), and the same JSONs give the same bytes, so the committed chart diffs
cleanly and the tests read its series by id.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

MIB = 1 << 20
OPERATIONS = ["log-metric", "log-batch", "create-run", "search-runs"]
BETTER, WORSE = "#2a9d8f", "#e76f51"
COLOURS = ["#264653", "#e76f51", "#2a9d8f", "#e9c46a", "#8d6a9f"]
WIDTH = 980


@dataclass
class Run:
    name: str  # the JSON's file name without .json
    started: str  # ISO time, the order of the trend
    mode: str  # full, quick, ci
    results: dict[str, Any]


def read_run(path: Path) -> Run:
    data = json.loads(Path(path).read_text())
    return from_json(data, Path(path).stem)


def from_json(data: dict[str, Any], name: str) -> Run:
    return Run(name, str(data.get("started") or data.get("date") or ""), data.get("mode", "full"), data["results"])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _load_rps(results: dict[str, Any], operation: str, target: str) -> float | None:
    for row in _dig(results, "load", "rows") or []:
        if row.get("operation") == operation and row.get("target") == target and row.get("requests", 1):
            return _number(row.get("rps")) or None
    return None


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    lower_is_better: bool
    values: Callable[[dict[str, Any]], tuple[float | None, float | None]]


def _artifact_label(results: dict[str, Any], way: str) -> str:
    size = _number(_dig(results, "artifacts", "bytes"))
    return f"Artifact {way}, {size / MIB:g} MiB" if size else f"Artifact {way}"


FIGURES = [
    Figure(
        "deploy",
        "Cold deploy",
        "s",
        True,
        lambda r: (_number(_dig(r, "deploy", "ours_seconds")), _number(_dig(r, "deploy", "plain_seconds"))),
    ),
    Figure(
        "rest",
        "Memory at rest",
        "MiB",
        True,
        lambda r: (_number(_dig(r, "rest", "ours", "memory_mib")), _number(_dig(r, "rest", "plain", "memory_mib"))),
    ),
    *[
        Figure(
            operation,
            operation,
            "req/s",
            False,
            lambda r, op=operation: (_load_rps(r, op, "ours"), _load_rps(r, op, "plain")),
        )
        for operation in OPERATIONS
    ],
    Figure(
        "upload",
        "Artifact upload",
        "MiB/s",
        False,
        lambda r: (
            _number(_dig(r, "artifacts", "ours", "upload_mib_s")),
            _number(_dig(r, "artifacts", "plain", "upload_mib_s")),
        ),
    ),
    Figure(
        "download",
        "Artifact download",
        "MiB/s",
        False,
        lambda r: (
            _number(_dig(r, "artifacts", "ours", "download_mib_s")),
            _number(_dig(r, "artifacts", "plain", "download_mib_s")),
        ),
    ),
    Figure(
        "ui",
        "UI first load",
        "bytes",
        True,
        lambda r: (_number(_dig(r, "ui", "ours", "total_bytes")), _number(_dig(r, "ui", "plain", "total_bytes"))),
    ),
    Figure(
        "restart",
        "Restart to first answer",
        "s",
        True,
        lambda r: (_number(_dig(r, "restart", "ours", "seconds")), _number(_dig(r, "restart", "plain", "seconds"))),
    ),
]

# The trend: (series id, legend, value of a run's results or None)
SECONDS_SERIES: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("deploy-ours", "cold deploy, ours", lambda r: _number(_dig(r, "deploy", "ours_seconds"))),
    ("deploy-plain", "cold deploy, plain", lambda r: _number(_dig(r, "deploy", "plain_seconds"))),
    ("rerun-ours", "no-op re-run, ours", lambda r: _number(_dig(r, "rerun", "seconds"))),
]


def _throughput_ratio(operation: str) -> Callable[[dict[str, Any]], float | None]:
    def ratio(results: dict[str, Any]) -> float | None:
        ours, plain = _load_rps(results, operation, "ours"), _load_rps(results, operation, "plain")
        return round(ours / plain, 3) if ours and plain else None

    return ratio


RATIO_SERIES = [(operation, operation, _throughput_ratio(operation)) for operation in OPERATIONS]


@dataclass
class Bar:
    key: str
    label: str
    unit: str
    ours: float
    plain: float
    ratio: float
    better: bool
    lower_is_better: bool
    run: str


def bars(runs: list[Run]) -> list[Bar]:
    """Per figure, ours / plain from the newest run (in ``runs``' order) that has both values."""
    out = []
    for figure in FIGURES:
        for run in reversed(runs):
            ours, plain = figure.values(run.results)
            if ours is not None and plain:
                ratio = ours / plain
                label = (
                    _artifact_label(run.results, figure.label.split()[-1]) if figure.unit == "MiB/s" else figure.label
                )
                better = ratio < 1 if figure.lower_is_better else ratio > 1
                out.append(
                    Bar(figure.key, label, figure.unit, ours, plain, ratio, better, figure.lower_is_better, run.name)
                )
                break
    return out


def trend(runs: list[Run], series: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]]):
    """(id, legend, [(run index, value, run)]) per series that has at least one value."""
    out = []
    for key, legend, value in series:
        points = [(i, v, run) for i, run in enumerate(runs) if (v := value(run.results)) is not None]
        if points:
            out.append((key, legend, points))
    return out


# -- SVG --------------------------------------------------------------------------------------------------


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#333", dashed: bool = False) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{dash}/>'


def _fmt(value: float) -> str:
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    return f"{round(value, 2):g}"


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 and round steps up to at least ``high``."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [round(i * step, 10) for i in range(math.ceil(high / step - 1e-9) + 1)]


def _bars_svg(items: list[Bar], top: float) -> tuple[list[str], float]:
    left, width, row = 250, 300, 26
    high = max([1.5] + [bar.ratio * 1.1 for bar in items])
    scale = width / high
    title = "Ours against the plain recipe: ours ÷ plain per figure (plain = 1), from the newest run with it"
    parts = [_text(20, top, title, 15, font_weight="bold")]
    top += 14
    for index, bar in enumerate(items):
        y = top + index * row
        colour = BETTER if bar.better else WORSE
        direction = "lower" if bar.lower_is_better else "higher"
        detail = f"ours {_fmt(bar.ours)}, plain {_fmt(bar.plain)} {bar.unit} ({direction} is better) · {bar.run}"
        parts.append(
            f'<g id="bar-{bar.key}" class="bar" data-ratio="{bar.ratio:.3f}" data-run={quoteattr(bar.run)}>'
            f"<title>{escape(f'{bar.label}: {detail}')}</title>"
            + _text(left - 8, y + 16, f"{bar.label} ({bar.unit})", anchor="end")
            + f'<rect x="{left}" y="{y + 4:.1f}" width="{bar.ratio * scale:.1f}" height="{row - 8}" fill="{colour}"/>'
            + _text(left + bar.ratio * scale + 4, y + 16, f"{bar.ratio:.2f}×", 11)
            + _text(left + width + 20, y + 16, detail, 11, fill="#555")
            + "</g>"
        )
    bottom = top + len(items) * row
    one = left + scale
    parts.append(_line(one, top, one, bottom, dashed=True))
    parts.append(_text(one, bottom + 14, "plain = 1", 11, anchor="middle"))
    parts.append(_line(left, top, left, bottom))
    return parts, bottom + 30


def _trend_svg(runs: list[Run], series, title: str, box: tuple[float, float, float, float], one: bool = False):
    """One panel: a line per series over the runs (numbered as in the key below the panels)."""
    x0, y0, width, height = box
    parts = [_text(x0, y0 - 34, title, 14, font_weight="bold")]
    values = [v for _, _, points in series for _, v, _ in points]
    ticks = nice_ticks(max(values + ([1.2] if one else [1.0])))
    high = ticks[-1]

    def px(index: int) -> float:
        return x0 + (index + 0.5) * width / max(1, len(runs))

    def py(value: float) -> float:
        return y0 + height - value / high * height

    for tick in ticks:
        parts.append(_line(x0, py(tick), x0 + width, py(tick), stroke="#ddd"))
        parts.append(_text(x0 - 6, py(tick) + 4, _fmt(tick), 10, anchor="end"))
    if one:
        parts.append(_line(x0, py(1), x0 + width, py(1), dashed=True))
    for index in range(len(runs)):
        parts.append(_text(px(index), y0 + height + 14, str(index + 1), 10, anchor="middle"))
    legend_x = x0
    for number, (key, legend, points) in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        coords = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v, _ in points)
        dots = "".join(
            f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3.5" stroke="{colour}" stroke-width="1.5" '
            f'fill="{"white" if run.mode == "ci" else colour}">'
            f"<title>{escape(f'{i + 1}. {run.name}: {legend} {_fmt(v)}')}</title></circle>"
            for i, v, run in points
        )
        parts.append(
            f'<g id="trend-{key}" class="series" data-points="{len(points)}">'
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>{dots}</g>'
        )
        parts.append(f'<rect x="{legend_x}" y="{y0 - 20}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(legend_x + 14, y0 - 11, legend, 11))
        legend_x += 22 + 6.5 * len(legend)
    if not series:
        parts.append(_text(x0 + width / 2, y0 + height / 2, "no run has these figures", 12, anchor="middle"))
    parts.append(f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="none" stroke="#999"/>')
    return parts


def render(runs: Iterable[Run]) -> str:
    ordered = sorted(runs, key=lambda run: (run.started, run.name))
    if not ordered:
        raise ValueError("no runs to draw")
    parts, top = _bars_svg(bars(ordered), 30)
    box_height = 220
    panel_top = top + 56
    seconds = trend(ordered, SECONDS_SERIES)
    ratios = trend(ordered, RATIO_SERIES)
    parts += _trend_svg(ordered, seconds, "Cold deploy and no-op re-run (s)", (50, panel_top, 400, box_height))
    parts += _trend_svg(ordered, ratios, "Requests/s, ours ÷ plain", (540, panel_top, 410, box_height), one=True)
    key_top = panel_top + box_height + 40
    parts.append(
        _text(
            20, key_top, "Runs, oldest first (a hollow point is a --ci run: ours' deploy beside the plain install):", 11
        )
    )
    rows = math.ceil(len(ordered) / 2)
    for index, run in enumerate(ordered):
        x, y = 20 + (index // rows) * 480, key_top + 16 + (index % rows) * 15
        parts.append(_text(x, y, f"{index + 1}. {run.name} ({run.mode})", 11, fill="#333"))
    height = key_top + 16 + rows * 15 + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )


def write_chart(out: Path, recorded: Iterable[Path], current: tuple[dict[str, Any], str] | None = None) -> Path:
    """The chart of the recorded runs (JSON files) and, if given, the run just made (its JSON data and name)."""
    runs = [read_run(path) for path in recorded]
    if current is not None:
        runs.append(from_json(*current))
    Path(out).write_text(render(runs))
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chart.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench JSON files (bench/results/*.json, docs/bench/*.json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the SVG to write")
    args = parser.parse_args(argv)
    write_chart(args.output, args.runs)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
