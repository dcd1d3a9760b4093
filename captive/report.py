"""The monthly report as a PDF: the report page itself, laid out for A4 by WeasyPrint.

The page is the one the dashboard shows (``printed``: no navigation, no forms), so the PDF
and the screen come from the same queries and the same words. WeasyPrint fetches only the
portal's own stylesheet from disk: nothing from the network, whatever the page links.
Page numbers, the city's name and the month sit in the page margins (CSS paged media).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import gettext as _

STATIC = Path(__file__).resolve().parent / "static"


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal: quotes, backslashes and every character that is
    not printable written as CSS escapes, so no text can end the string."""
    out = []
    for ch in text:
        if ch in '"\\' or not ch.isprintable():
            out.append(f"\\{ord(ch):x} ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def page_css(city: str, title: str) -> str:
    """The margins of every page: the report's title at the top, the city and the page
    number (``Halaman 2 dari 5``) at the bottom."""
    of = _("Halaman %(page)s dari %(pages)s", page="\x00", pages="\x01")
    before, _sep, rest = of.partition("\x00")
    middle, _sep, after = rest.partition("\x01")
    numbers = " ".join(
        part
        for part in (
            _css_string(before) if before else "",
            "counter(page)",
            _css_string(middle) if middle else "",
            "counter(pages)",
            _css_string(after) if after else "",
        )
        if part
    )
    return f"""
@page {{
  size: A4;
  margin: 18mm 16mm 20mm 16mm;
  @top-left {{ content: {_css_string(title)}; font-size: 9pt; color: #444; }}
  @bottom-left {{ content: {_css_string(_("WiFi Kota %(city)s", city=city))};
                  font-size: 9pt; color: #444; }}
  @bottom-right {{ content: {numbers}; font-size: 9pt; color: #444; }}
}}
html, body {{ font-family: "DejaVu Sans", sans-serif; font-size: 10pt; }}
"""


def _local_fetcher() -> Any:
    """WeasyPrint's fetcher: the portal's own static files from disk, nothing else (no
    network, whatever a page links)."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class LocalOnly(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            name = url.split("/static/", 1)[1] if "/static/" in url else ""
            path = (STATIC / name).resolve() if name else None
            if path is None or path.parent != STATIC or not path.is_file():
                raise ValueError(f"not fetched for the report: {url}")
            kind = "text/css" if path.suffix == ".css" else "application/octet-stream"
            return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": kind})

    return LocalOnly()


def pdf(html: str, base_url: str, title: str = "") -> bytes:
    """The PDF of a printed report page."""
    from weasyprint import CSS, HTML

    city = str(current_app.config.get("CITY_NAME", ""))
    fetcher = _local_fetcher()
    css = CSS(string=page_css(city, title), url_fetcher=fetcher)
    document = HTML(string=html, base_url=base_url, url_fetcher=fetcher)
    made: bytes = document.write_pdf(stylesheets=[css])
    return made
