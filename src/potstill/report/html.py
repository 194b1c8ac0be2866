"""Self-contained HTML pages: a stage's page (headline numbers, tables, PNG figures) and
the run's index that links them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

_HEADLINE = (
    ("pool", "energy_mae_meV_per_atom", "pool energy MAE", "meV/atom"),
    ("pool", "force_mae_eV_per_A", "pool force MAE", "eV/A"),
    ("pool", "stress_mae_GPa", "pool stress MAE", "GPa"),
)


def write_html(
    path: str | Path,
    *,
    title: str,
    summary: dict,
    tables: Sequence[tuple[str, str]] = (),
    figures: Sequence[str | Path] = (),
) -> Path:
    """Write the report page; ``tables`` are (caption, markdown table), ``figures`` PNG
    paths (linked relative to the page)."""
    path = Path(path)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<p><a href='../index.html'>all stages of this run</a></p>",
        "<table class='kv'>",
    ]
    for label, value, unit in _headline(summary):
        parts.append(f"<tr><th>{label}</th><td>{value:.4g} {unit}</td></tr>")
    parts.append("</table>")
    for caption, table in tables:
        parts.append(f"<h2>{html.escape(caption)}</h2>{_markdown_table(table)}")
    for figure in figures:
        name = Path(figure).name
        parts.append(
            f"<figure><img src='{html.escape(name)}' alt='{html.escape(name)}'><figcaption>{html.escape(name)}</figcaption></figure>"
        )
    parts.append(
        "<h2>summary.json</h2><pre>"
        + html.escape(json.dumps(_headline_only(summary), indent=2, default=str))
        + "</pre>"
    )
    path.write_text(_page(title, parts))
    return path


def write_index(
    path: str | Path, *, title: str, summary: dict, pages: Sequence[tuple[str, str]]
) -> Path:
    """Write the run's index: one link per stage page (``pages``: stage name and the
    page's path relative to the index) with the stage's headline numbers."""
    path = Path(path)
    parts = [f"<h1>{html.escape(title)}</h1>", "<table><tr><th>stage</th><th>headline</th></tr>"]
    for name, link in pages:
        stage = summary.get(name) if isinstance(summary.get(name), dict) else {}
        headline = ", ".join(
            f"{label} {value:.4g} {unit}" for label, value, unit in _headline(stage)
        )
        parts.append(
            f"<tr><td><a href='{html.escape(link)}'>{html.escape(name)}</a></td>"
            f"<td>{html.escape(headline)}</td></tr>"
        )
    parts.append("</table><p>Every stage's numbers: <a href='summary.json'>summary.json</a></p>")
    path.write_text(_page(title, parts))
    return path


def _headline(summary: dict) -> list[tuple[str, float, str]]:
    found = []
    for section, key, label, unit in _HEADLINE:
        block = summary.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        if value is not None:
            found.append((label, value, unit))
    if isinstance(summary.get("wall_time_s"), (int, float)):
        found.append(("wall time", summary["wall_time_s"], "s"))
    return found


def _page(title: str, parts: Sequence[str]) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}"
        "</style></head><body>" + "\n".join(parts) + "</body></html>"
    )


def _markdown_table(table: str) -> str:
    rows = [line.strip().strip("|").split("|") for line in table.strip().splitlines()]
    rows = [r for r in rows if not all(set(c.strip()) <= set("-: ") for c in r)]
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>"
        for r in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _headline_only(summary: dict) -> dict:
    """summary without the bulky per-quantity error blocks."""
    short = dict(summary)
    if isinstance(short.get("pool"), dict):
        short["pool"] = {k: v for k, v in short["pool"].items() if k != "errors"}
    return short
