"""`report.html`: the document as one self-contained page — inline CSS, plots embedded as
base64 PNG, no scripts and no network references, so it opens anywhere, offline."""

from __future__ import annotations

import base64
from html import escape

from experiments.report.blocks import Block, Bullets, Code, Document, Paragraph, Plot, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1600px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .8rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; }
th { background: #f6f8fa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
.scroll { overflow-x: auto; }
"""


def html_page(document: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(document.title)}</title>", f"<style>{STYLE}</style>", "</head>",
             "<body>", f"<h1>{escape(document.title)}</h1>"]
    for section in document.sections:
        parts.append(f"<h{section.level}>{escape(section.title)}</h{section.level}>")
        parts += [_block(block) for block in section.blocks]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(
            "<li>" + (f"<strong>{escape(item.lead)}:</strong> " if item.lead else "")
            + f"{escape(item.text)}</li>"
            for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
        body = "".join(
            "<tr>" + "".join(_cell(cell, numeric=column >= block.left_columns)
                             for column, cell in enumerate(row)) + "</tr>"
            for row in block.rows)
        return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")
    if isinstance(block, Plot):
        image = base64.b64encode(block.draw()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{image}" alt="{escape(block.title)}">'
                f"<figcaption><strong>{escape(block.title)}.</strong> {escape(block.caption)}"
                "</figcaption></figure>")
    if isinstance(block, Code):
        return f"<pre>{escape(block.text)}</pre>"
    raise TypeError(f"Unknown report block {type(block).__name__}.")


def _cell(text: str, numeric: bool) -> str:
    attributes = ' class="number"' if numeric else ""
    return f"<td{attributes}>{escape(text)}</td>"
