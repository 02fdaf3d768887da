"""HTML building blocks of the self-contained report: escaped text, tables, embedded images, one stylesheet.

Nothing here refers to anything outside the page: images are PNG data URIs, the stylesheet is inline, there is
no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["esc", "table", "figure_tag", "png_tag", "section", "page", "fmt", "json_block", "kv_table", "json_tables"]

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}
header{background:#1d2b44;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c9d3e6;font-size:13px}
nav{padding:8px 32px;background:#e8ecf3;font-size:13px}nav a{margin-right:14px;color:#1d4e89;text-decoration:none}
main{padding:8px 32px 40px;max-width:1300px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:12px 20px;margin:16px 0}
h2{font-size:19px;margin:6px 0 10px;color:#1d2b44}h3{font-size:15px;margin:16px 0 6px;color:#33425e}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 10px}th,td{border:1px solid #dde2ea;padding:3px 8px;text-align:right}
th{background:#eef1f6;text-align:center}td.l,th.l{text-align:left}
tr.bad td{background:#fde8e8}td.bad{background:#f9c9c9;font-weight:600}td.ok{background:#e3f4e5}
.flag{color:#a11;font-weight:600}.good{color:#176b2c;font-weight:600}.muted{color:#6b7385;font-size:12px}
img{max-width:100%;height:auto;border:1px solid #eee;margin:4px 0}
pre{background:#f3f5f8;padding:8px;font-size:11.5px;overflow-x:auto;max-height:360px}
details summary{cursor:pointer;color:#1d4e89;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{margin:0;flex:1 1 420px}figcaption{font-size:12px;color:#555}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table cell (``-`` for None/NaN)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x != x:
            return "-"
        return f"{x:.{digits}g}"
    return esc(x)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, cell_class=None, row_class=None, left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned. ``cell_class(i, j, value)`` and
    ``row_class(i, row)`` may return a CSS class (``bad``, ``ok``)."""
    out = ["<table><tr>" + "".join(f'<th class="{"l" if j < left else ""}">{esc(h)}</th>' for j, h in enumerate(header)) + "</tr>"]
    for i, row in enumerate(rows):
        rc = row_class(i, row) if row_class else None
        cells = []
        for j, v in enumerate(row):
            cls = [c for c in ("l" if j < left else None, cell_class(i, j, v) if cell_class else None) if c]
            text = v if isinstance(v, RawHTML) else fmt(v)
            cells.append(f'<td class="{" ".join(cls)}">{text}</td>')
        out.append(f'<tr class="{rc or ""}">' + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


class RawHTML(str):
    """A string placed into a table cell without escaping."""


def png_tag(data: bytes, alt: str, caption: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{cap}</figure>'


def figure_tag(fig, alt: str, caption: str = "", dpi: int = 90) -> str:
    """Render a matplotlib figure to an embedded PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return png_tag(buf.getvalue(), alt, caption)


def file_png_tag(path: Path, caption: str = "") -> str:
    """Embed a PNG file (only files that really are PNG)."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return f'<p class="muted">{esc(path.name)}: not a PNG file, not embedded</p>'
    return png_tag(data, path.stem, caption or path.name)


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def kv_table(d: Mapping[str, Any]) -> str:
    return table(["key", "value"], [(k, v if isinstance(v, (int, float, str, bool, type(None))) else json.dumps(v)) for k, v in d.items()], left=2)


def json_block(obj: Any, summary: str = "raw JSON") -> str:
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(json.dumps(obj, indent=2, default=str))}</pre></details>"


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def json_tables(obj: Any, title: str = "", depth: int = 0) -> str:
    """Tables for arbitrary JSON: a mapping of scalars becomes a key/value table, a mapping of mappings of
    scalars a matrix (rows x columns); other structures recurse, and anything else is shown as raw JSON."""
    out = []
    if isinstance(obj, Mapping):
        scalars = {k: v for k, v in obj.items() if _is_scalar(v)}
        nested = {k: v for k, v in obj.items() if isinstance(v, Mapping) and v and all(_is_scalar(x) for x in v.values())}
        if scalars:
            out.append((f"<h3>{esc(title)}</h3>" if title else "") + kv_table(scalars))
        if len(nested) >= 2:
            cols = list(dict.fromkeys(c for v in nested.values() for c in v))
            out.append(table([title or ""] + cols, [[k] + [v.get(c) for c in cols] for k, v in nested.items()], cell_class=_pass_fail))
        for k, v in obj.items():
            if k in scalars or (len(nested) >= 2 and k in nested):
                continue
            if depth < 3:
                out.append(json_tables(v, f"{title} / {k}" if title else str(k), depth + 1))
    elif isinstance(obj, list) and obj and all(isinstance(r, list) and all(isinstance(x, (int, float)) for x in r) for r in obj):
        out.append((f"<h3>{esc(title)}</h3>" if title else "") + table([""] + [str(j) for j in range(len(obj[0]))], [[i] + r for i, r in enumerate(obj)]))
    elif isinstance(obj, list) and obj and all(isinstance(r, Mapping) for r in obj):
        cols = list(dict.fromkeys(c for r in obj for c in r if _is_scalar(r[c])))
        out.append((f"<h3>{esc(title)}</h3>" if title else "") + table(cols, [[r.get(c) for c in cols] for r in obj], cell_class=_pass_fail, left=0))
    elif _is_scalar(obj):
        out.append(f"<p>{esc(title)}: {fmt(obj)}</p>")
    return "\n".join(o for o in out if o)


def _pass_fail(i, j, v):
    if v is True:
        return "ok"
    if v is False:
        return "bad"
    if isinstance(v, str) and v.lower() in ("pass", "passed", "ok"):
        return "ok"
    if isinstance(v, str) and v.lower() in ("fail", "failed"):
        return "bad"
    return None


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head>\n<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{links}</nav>\n<main>\n{body}\n</main></body></html>\n"
    )
