"""Charts drawn on the server as SVG: nothing is fetched from anywhere, nothing runs in the
browser, and they print. Markup only (no style attributes: the CSP allows none)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

BLUE = "#0b4f8a"


def bars(values: Sequence[int], labels: Sequence[str], title: str, height: int = 160) -> Markup:
    """A bar chart of ``values`` (one bar each), labels every few bars."""
    n = max(1, len(values))
    left, width = 56, 900
    top = max(values, default=0) or 1
    bar_w = (width - left) / n
    step = max(1, -(-n // 12))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 24}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>',
        f'<line x1="{left}" y1="0" x2="{width}" y2="0" stroke="#ddd"/>',
        f'<text x="0" y="12" font-size="12" fill="#333">{top:,}</text>',
        f'<text x="0" y="{height}" font-size="12" fill="#333">0</text>',
    ]
    for i, v in enumerate(values):
        h = round(height * v / top, 1)
        x = round(left + i * bar_w + bar_w * 0.1, 1)
        parts.append(
            f'<rect x="{x}" y="{height - h}" width="{round(bar_w * 0.8, 1)}" height="{h}" '
            f'fill="{BLUE}"><title>{escape(labels[i])}: {v:,}</title></rect>'
        )
        if i % step == 0:
            parts.append(
                f'<text x="{x}" y="{height + 16}" font-size="12" fill="#333">'
                f"{escape(labels[i])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def heatmap(grid: Sequence[Sequence[int]], rows: Sequence[str], title: str) -> Markup:
    """Weekday x hour: darker is busier."""
    cell, left, top_pad = 22, 40, 16
    top = max((v for row in grid for v in row), default=0) or 1
    width, height = left + 24 * cell, top_pad + len(grid) * cell
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for hour in range(0, 24, 3):
        x = left + hour * cell + 2
        parts.append(f'<text x="{x}" y="11" font-size="10" fill="#333">{hour:02d}</text>')
    for r, row in enumerate(grid):
        y = top_pad + r * cell
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="11" fill="#333">{escape(rows[r])}</text>'
        )
        for hour, v in enumerate(row):
            shade = round(0.08 + 0.92 * v / top, 2) if v else 0.03
            parts.append(
                f'<rect x="{left + hour * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{BLUE}" fill-opacity="{shade}"><title>{escape(rows[r])} '
                f"{hour:02d}:00: {v:,}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def site_map(points: Sequence[tuple[str, float, float, int, str]], title: str) -> Markup:
    """The sites at their coordinates: (label, lat, lon, clients online, state), a circle
    each, larger with more clients; red where an AP is down, grey where none is checked."""
    width, height, pad = 900, 420, 60
    if not points:
        return Markup("")
    lats = [p[1] for p in points]
    lons = [p[2] for p in points]
    span_lat = (max(lats) - min(lats)) or 0.01
    span_lon = (max(lons) - min(lons)) or 0.01
    scale = min((width - 2 * pad) / span_lon, (height - 2 * pad) / span_lat)
    colour = {"down": "#b00020", "unknown": "#888888", "degraded": "#b37400"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eef2f6"/>',
    ]
    top = max((p[3] for p in points), default=0) or 1
    for label, lat, lon, online, state in points:
        x = round(pad + (lon - min(lons)) * scale, 1)
        y = round(height - pad - (lat - min(lats)) * scale, 1)
        r = round(6 + 18 * (online / top) ** 0.5, 1)
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="{r}" fill="{colour.get(state, BLUE)}" '
            f'fill-opacity="0.8"><title>{escape(label)}: {online:,}</title></circle>'
        )
        parts.append(
            f'<text x="{x + r + 4}" y="{y + 4}" font-size="13" fill="#111">'
            f"{escape(label)} ({online:,})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
