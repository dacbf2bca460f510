"""A report's content as plain data, independent of the output format.

`content.build_document` decides what a report says; `markdown` and `html_page` only decide
how it looks. Text is plain (no markup), so each renderer can escape it for its own format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullet:
    lead: str  # shown in bold before the text ("" for none)
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[Bullet, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    left_columns: int = 1  # leading text columns; the rest hold numbers (right-aligned)


@dataclass(frozen=True)
class Plot:
    title: str
    caption: str
    draw: Callable[[], bytes]  # PNG bytes; called only by renderers that embed images


@dataclass(frozen=True)
class Code:
    text: str


Block = Union[Paragraph, Bullets, Table, Plot, Code]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]
    level: int = 2  # heading level: 2 for sections, 3 for their subsections


@dataclass(frozen=True)
class Document:
    title: str
    sections: tuple[Section, ...]
