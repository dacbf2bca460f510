"""`report.md`: the document as GitHub-flavoured Markdown. Plots are listed by title only;
their images live in the self-contained report.html."""

from __future__ import annotations

from typing import Sequence

from experiments.report.blocks import Block, Bullets, Code, Document, Paragraph, Plot, Table


def markdown(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for section in document.sections:
        lines += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            lines += _block(block) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- **{item.lead}:** {item.text}" if item.lead else f"- {item.text}"
                for item in block.items]
    if isinstance(block, Table):
        align = ["---"] * block.left_columns + ["---:"] * (len(block.header) - block.left_columns)
        return [_row(block.header), _row(align), *(_row(row) for row in block.rows)]
    if isinstance(block, Plot):
        return [f"- Plot (in report.html): **{block.title}**. {block.caption}"]
    if isinstance(block, Code):
        return ["```json", block.text, "```"]
    raise TypeError(f"Unknown report block {type(block).__name__}.")


def _row(cells: Sequence[str]) -> str:
    # A pipe inside a cell would end it early; a newline would end the table.
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
