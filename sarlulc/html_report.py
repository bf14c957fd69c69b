"""The shell every self-contained HTML report of the plugin fills (training, evaluation, class areas):
the page with its head and shared styles, escaping, table rows, class swatches and the opening tag of
an inline SVG chart. No script and no external resource, so a report opens offline, anywhere."""

from __future__ import annotations

import html

STYLE = ("body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}\n"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} th{background:#f2f2f2}\n"
         ".swatch{display:inline-block;width:10px;height:10px;margin-right:6px}")
"""The look all reports share: numbers right-aligned in ruled tables, class colour swatches."""


def escape(value) -> str:
    """``value`` as text that is safe in HTML content and in quoted attributes."""
    return html.escape(str(value))


def page(title: str, body: str, style: str = "") -> str:
    """A whole document: ``title`` (plain text), the shared STYLE followed by this report's own CSS
    rules (``style``, which win over the shared ones), and ``body`` (markup)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>\n'
            f"<style>{STYLE}{style}</style>\n</head><body>\n{body}\n</body></html>\n")


def row(cells, header: bool = False) -> str:
    """A table row of ``cells`` (markup: escape text first), as header cells when ``header``."""
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def key_value_rows(pairs) -> str:
    """Rows of a heading and a value, both plain text: a report's summary or facts."""
    return "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in pairs)


def swatch(color: str) -> str:
    """A small square in a class colour (``#rrggbb``), set before the class's code or name."""
    return f'<span class="swatch" style="background:{escape(color)}"></span>'


def svg_open(width, height, label: str, font_size: int | None = None) -> str:
    """The opening tag of an inline SVG chart, ``label`` (plain text) naming it for screen readers."""
    font = f'font-family="sans-serif" font-size="{font_size}" ' if font_size else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" {font}'
            f'role="img" aria-label="{escape(label)}">')
