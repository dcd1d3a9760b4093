"""Charts drawn on the server as SVG: nothing is fetched from anywhere (but the map tiles
of a tile source the city configures), nothing runs in the browser, and they print.
Markup only (no style attributes: the CSP allows none).

Every number on a chart is written by :mod:`captive.formats` (the page's language), every
chart has its title, its axis titles with their unit, and values that can be read without
hovering (a phone has no hover, paper neither).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from . import formats

BLUE = "#0b4f8a"
INK = "#222"
FONT = 'font-family="sans-serif"'


def _boxed(parts: list[str], title: str) -> Markup:
    """The chart in a box of its own, which a phone scrolls sideways (its labels stay
    legible) while the page itself does not."""
    return Markup(
        f'<div class="chart-box" tabindex="0" role="region" aria-label="{escape(title)}">'
        + "".join(parts)
        + "</div>"
    )


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round values from 0 to at least ``top`` for an axis (1, 2, 2.5 or 5 times a power
    of ten apart), about ``count`` of them past 0."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    step = next((m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), 10 * power)
    ticks, v = [0.0], 0.0
    while v < top:
        v += step
        ticks.append(v)
    return ticks


def bars(
    values: Sequence[int],
    labels: Sequence[tuple[str, str]],
    title: str,
    unit: str,
    height: int = 180,
) -> Markup:
    """A bar chart of ``values`` (one bar each, e.g. per day), with a y axis of round
    ticks titled ``unit``, and under the bars their two-line labels (weekday, day)."""
    n = max(1, len(values))
    left, width, top_pad = 64, 900, 22
    ticks = nice_ticks(max(values, default=0))
    top = ticks[-1]
    plot_h = height - top_pad
    bar_w = (width - left) / n
    step = max(1, -(-n // 16))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 40}" '
        f'role="img" aria-label="{escape(title)}" class="chart" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="12" font-size="14" fill="{INK}">{escape(unit)}</text>',
    ]
    for t in ticks:
        y = round(top_pad + plot_h - plot_h * t / top, 1)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 5}" font-size="14" fill="{INK}" '
            f'text-anchor="end">{escape(formats.number(t))}</text>'
        )
    base = top_pad + plot_h
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#666"/>')
    for i, v in enumerate(values):
        h = round(plot_h * v / top, 1)
        x = round(left + i * bar_w + bar_w * 0.1, 1)
        weekday, day = labels[i]
        parts.append(
            f'<rect x="{x}" y="{round(base - h, 1)}" width="{round(bar_w * 0.8, 1)}" '
            f'height="{h}" fill="{BLUE}"><title>{escape(weekday)} {escape(day)}: '
            f"{escape(formats.number(v))}</title></rect>"
        )
        if i % step == 0:
            cx = round(left + (i + 0.5) * bar_w, 1)
            parts.append(
                f'<text x="{cx}" y="{base + 17}" font-size="13" fill="{INK}" '
                f'text-anchor="middle">{escape(weekday)}</text>'
                f'<text x="{cx}" y="{base + 34}" font-size="13" fill="{INK}" '
                f'text-anchor="middle">{escape(day)}</text>'
            )
    parts.append("</svg>")
    return _boxed(parts, title)


def heatmap(grid: Sequence[Sequence[int]], rows: Sequence[str], title: str, legend: str) -> Markup:
    """Weekday x hour: darker is busier, each cell's value written in it, and a legend of
    what the lightest and darkest shades stand for."""
    cell, left, top_pad = 36, 48, 22
    top = max((v for row in grid for v in row), default=0) or 1
    width, height = left + 24 * cell, top_pad + len(grid) * cell + 44
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart" {FONT}>',
        f"<title>{escape(title)}</title>",
    ]
    for hour in range(0, 24, 2):
        x = left + hour * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="15" font-size="13" fill="{INK}" text-anchor="middle">'
            f"{hour:02d}</text>"
        )
    for r, row in enumerate(grid):
        y = top_pad + r * cell
        parts.append(
            f'<text x="0" y="{y + 23}" font-size="14" fill="{INK}">{escape(rows[r])}</text>'
        )
        for hour, v in enumerate(row):
            shade = round(0.08 + 0.92 * v / top, 2) if v else 0.03
            ink = "#fff" if shade > 0.5 else INK
            value = escape(formats.number(v))
            parts.append(
                f'<rect x="{left + hour * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{BLUE}" fill-opacity="{shade}"><title>{escape(rows[r])} '
                f"{hour:02d}:00: {value}</title></rect>"
            )
            if v:
                parts.append(
                    f'<text x="{left + hour * cell + (cell - 2) / 2}" y="{y + 22}" '
                    f'font-size="11" fill="{ink}" text-anchor="middle">{value}</text>'
                )
    y = top_pad + len(grid) * cell + 14
    parts.append(f'<text x="0" y="{y + 14}" font-size="13" fill="{INK}">{escape(legend)}</text>')
    steps = sorted({1, (top + 1) // 2, top}) if top > 1 else [top]  # distinct values only
    for k, v in enumerate(steps):
        shade = round(0.08 + 0.92 * v / top, 2)
        x = 360 + k * 150
        parts.append(
            f'<rect x="{x}" y="{y}" width="24" height="18" fill="{BLUE}" '
            f'fill-opacity="{shade}"/><text x="{x + 30}" y="{y + 14}" font-size="13" '
            f'fill="{INK}">{escape(formats.number(v))}</text>'
        )
    parts.append("</svg>")
    return _boxed(parts, title)


def _place_labels(
    anchors: Sequence[tuple[float, float, float]], width: int, line: int = 18
) -> list[tuple[float, float, str]]:
    """Where each point's label goes, so no two overlap: right of its circle if that is
    free, else left, else moved down a line at a time (x, y, text-anchor)."""
    taken: list[tuple[float, float, float, float]] = []
    out = []
    for x, y, r in anchors:
        w = 240.0  # room for a place's name and count at 14 px
        for dy in (0, line, -line, 2 * line, -2 * line, 3 * line, -3 * line):
            tries = [(x + r + 4, "start"), (x - r - 4, "end")]
            for lx, anchor in tries:
                box = (lx if anchor == "start" else lx - w, y + dy - 14, w, line)
                if box[0] < 0 or box[0] + w > width:
                    continue
                if not any(_overlap(box, t) for t in taken):
                    taken.append(box)
                    out.append((lx, y + dy + 4, anchor))
                    break
            else:
                continue
            break
        else:
            out.append((x + r + 4, y + 4, "start"))
    return out


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _mercator(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """A point's pixel on the Web Mercator map of ``zoom`` (256-pixel tiles, as tile
    servers cut them)."""
    size = 256 * 2**zoom
    lat = max(-85.05, min(85.05, lat))
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return (lon + 180) / 360 * size, (1 - y / math.pi) / 2 * size


def site_map(
    points: Sequence[tuple[str, float, float, int, str]],
    title: str,
    tiles: tuple[str, str] | None = None,
) -> Markup:
    """The sites at their coordinates: (label, lat, lon, clients online, state), a circle
    each, larger with more clients; red where an AP is down, grey where none is checked.

    ``tiles`` (a tile address with {z}/{x}/{y}, and its attribution) draws the map's tiles
    under the places; without it there are none, and nothing is fetched from outside."""
    width, height, pad = 900, 420, 60
    if not points:
        return Markup("")
    # the closest zoom at which every place fits inside the padding (each zoom doubles
    # the distances), at most 17: one place alone shows its street, not its doorstep
    world = [_mercator(p[1], p[2], 0) for p in points]
    span_x = max(x for x, _ in world) - min(x for x, _ in world)
    span_y = max(y for _, y in world) - min(y for _, y in world)
    zoom = 17
    while zoom > 0 and (span_x * 2**zoom > width - 2 * pad or span_y * 2**zoom > height - 2 * pad):
        zoom -= 1
    xy = [(x * 2**zoom, y * 2**zoom) for x, y in world]
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    # the pixel of the whole world map at the picture's top left corner
    left = (min(xs) + max(xs)) / 2 - width / 2
    top_px = (min(ys) + max(ys)) / 2 - height / 2
    colour = {"down": "#b00020", "unknown": "#888888", "degraded": "#b37400"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eef2f6"/>',
    ]
    if tiles:
        url = tiles[0]
        count = 2**zoom
        for ty in range(int(top_px // 256), int((top_px + height) // 256) + 1):
            if not 0 <= ty < count:
                continue
            for tx in range(int(left // 256), int((left + width) // 256) + 1):
                href = url.replace("{z}", str(zoom)).replace("{x}", str(tx % count))
                href = href.replace("{y}", str(ty))
                parts.append(
                    f'<image href="{escape(href)}" x="{round(tx * 256 - left, 1)}" '
                    f'y="{round(ty * 256 - top_px, 1)}" width="256" height="256"/>'
                )
    most = max((p[3] for p in points), default=0) or 1
    placed = []
    for (label, _lat, _lon, online, state), (px, py) in zip(points, xy, strict=True):
        x, y = round(px - left, 1), round(py - top_px, 1)
        r = round(6 + 18 * (online / most) ** 0.5, 1)
        placed.append((label, online, state, x, y, r))
    spots = _place_labels([(x, y, r) for *_, x, y, r in placed], width)
    for (label, online, state, x, y, r), (lx, ly, anchor) in zip(placed, spots, strict=True):
        text = f"{label} ({formats.number(online)})"
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="{r}" fill="{colour.get(state, BLUE)}" '
            f'fill-opacity="0.8"><title>{escape(text)}</title></circle>'
            f'<text x="{round(lx, 1)}" y="{round(ly, 1)}" font-size="14" fill="#111" '
            f'text-anchor="{anchor}" stroke="#fff" stroke-width="3" paint-order="stroke">'
            f"{escape(text)}</text>"
        )
    if tiles:
        box = min(width, round(len(tiles[1]) * 6.5 + 12))
        parts.append(
            f'<rect x="{width - box}" y="{height - 20}" width="{box}" height="20" fill="#fff" '
            f'fill-opacity="0.8"/><text x="{width - 6}" y="{height - 6}" font-size="12" '
            f'fill="{INK}" text-anchor="end">{escape(tiles[1])}</text>'
        )
    parts.append("</svg>")
    return _boxed(parts, title)
