"""Plain A4 PDF documents (receipts, dispute evidence packs) with fpdf2: a venue letterhead, headings, label/value
blocks, wrapping tables and page numbers.

Text never breaks a document. DejaVu Sans (Debian's fonts-dejavu-core, present wherever chromium is) is embedded
when it is installed, so "Łukasz O’Brien–Smith" prints as typed; without it the PDF falls back to fpdf2's core
Helvetica, which only draws Latin-1, and `latin1_safe` maps everything else (typographic punctuation to its ASCII
twin, "Ł" to "L", anything unknown to "?"). The same input gives the same bytes: the creation date is the
document's own `generated_at`, never the wall clock, so a recorded SHA-256 can be checked against a re-render.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode, XPos, YPos

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
INK = (31, 41, 51)
MUTED = (100, 110, 120)
RULE = (203, 213, 225)
ALERT = (185, 28, 28)
HEADER_FILL = (241, 245, 249)

# Typographic characters people and our own text use, drawn with Latin-1 (the core fonts' whole repertoire).
_PUNCTUATION = str.maketrans(
    {
        "‘": "'", "’": "'", "‚": ",", "‛": "'", "“": '"', "”": '"', "„": '"', "‹": "<", "›": ">",
        "–": "-", "—": "-", "‒": "-", "−": "-", "‐": "-", "‑": "-", "…": "...", "•": "*",
        "€": "EUR", "™": "(TM)", "→": "->", "←": "<-", "≥": ">=", "≤": "<=", "≈": "~", "✓": "v", "✗": "x",
        "\u2009": " ", "\u202f": " ", "\u200b": "", "\t": "    ",
    }
)  # fmt: skip
# Letters NFKD cannot take apart into a base letter and an accent.
_LETTERS = {
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Œ": "OE", "œ": "oe", "Ŀ": "L",
    "ŀ": "l", "ẞ": "SS", "Ŋ": "N", "ŋ": "n", "Ŧ": "T", "ŧ": "t",
}  # fmt: skip


def latin1_safe(text: str) -> str:
    """`text` as fpdf2's core fonts can draw it: Latin-1 kept as is, other characters mapped or '?'."""
    out: list[str] = []
    for ch in str(text).translate(_PUNCTUATION):
        code = ord(ch)
        if ch == "\n" or 32 <= code < 127 or 160 <= code < 256:
            out.append(ch)
        elif ch in _LETTERS:
            out.append(_LETTERS[ch])
        elif code < 32 or 127 <= code < 160:
            out.append(" ")
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if 32 <= ord(c) < 256 and c.isprintable())
            out.append(base or "?")
    return "".join(out)


def unicode_font() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold, when both are installed."""
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


@dataclass(frozen=True)
class Letterhead:
    """Who the document is from: printed at the top of the first page."""

    name: str
    lines: tuple[str, ...] = ()


class _Pdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(size=8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.footer_text, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")


class Document:
    """One PDF being written top to bottom. Every string passes through `text`, so any name is safe."""

    def __init__(
        self,
        title: str,
        *,
        letterhead: Letterhead,
        generated_at: datetime,
        footer: str = "",
        embed_unicode_font: bool = True,
    ) -> None:
        pdf = _Pdf(format="A4")
        pdf.set_creation_date(generated_at)
        pdf.set_title(title)
        pdf.set_author(letterhead.name)
        pdf.set_creator("Room Desk")
        pdf.set_margins(15, 15, 15)
        pdf.set_auto_page_break(auto=True, margin=18)
        font = unicode_font() if embed_unicode_font else None
        if font is not None:
            pdf.add_font("body", "", str(font[0]))
            pdf.add_font("body", "B", str(font[1]))
            self.family, self.unicode = "body", True
        else:
            self.family, self.unicode = "helvetica", False
        self.pdf = pdf
        pdf.footer_text = self.text(footer or title)
        pdf.set_font(self.family, size=10)
        pdf.add_page()
        self._letterhead(letterhead, title)

    @property
    def width(self) -> float:
        return float(self.pdf.epw)

    def text(self, value: object) -> str:
        s = "" if value is None else str(value)
        return s if self.unicode else latin1_safe(s)

    def _letterhead(self, head: Letterhead, title: str) -> None:
        pdf = self.pdf
        pdf.set_text_color(*INK)
        pdf.set_font(self.family, "B", 13)
        pdf.cell(0, 6, self.text(head.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(self.family, "", 9)
        pdf.set_text_color(*MUTED)
        for line in head.lines:
            if line:
                pdf.cell(0, 4.5, self.text(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(4)
        pdf.set_text_color(*INK)
        pdf.set_font(self.family, "B", 18)
        pdf.cell(0, 9, self.text(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self._rule()

    def _rule(self) -> None:
        pdf = self.pdf
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.3)
        pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.l_margin + pdf.epw, pdf.get_y() + 1)
        pdf.ln(4)

    def heading(self, text: str) -> None:
        pdf = self.pdf
        if pdf.get_y() > pdf.h - 45:  # a heading never sits alone at the foot of a page
            pdf.add_page()
        pdf.ln(2)
        pdf.set_text_color(*INK)
        pdf.set_font(self.family, "B", 12)
        pdf.cell(0, 7, self.text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(self.family, "", 10)

    def paragraph(self, text: str, *, size: float = 10, muted: bool = False, bold: bool = False) -> None:
        pdf = self.pdf
        pdf.set_text_color(*(MUTED if muted else INK))
        pdf.set_font(self.family, "B" if bold else "", size)
        pdf.multi_cell(0, size * 0.5, self.text(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.5)
        pdf.set_text_color(*INK)
        pdf.set_font(self.family, "", 10)

    def fields(self, rows: Sequence[tuple[str, str]], *, label_width: float = 48) -> None:
        """Label / value pairs, the value wrapping beside its label. A pair never splits across a page when it fits on
        one: a label is not left at the foot of a page with its value on the next."""
        pdf = self.pdf
        for label, value in rows:
            self._keep_together(label, value or "—", label_width)
            pdf.set_font(self.family, "B", 9.5)
            pdf.set_text_color(*MUTED)
            y = pdf.get_y()
            pdf.multi_cell(label_width, 5, self.text(label), align="L", new_x=XPos.RIGHT, new_y=YPos.TOP)
            pdf.set_xy(pdf.l_margin + label_width, y)
            pdf.set_font(self.family, "", 9.5)
            pdf.set_text_color(*INK)
            pdf.multi_cell(0, 5, self.text(value or "—"), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(0.8)
        pdf.ln(1.5)

    def _lines(self, width: float, text: str, *, bold: bool) -> int:
        """How many lines `text` takes in a cell `width` wide (nothing drawn)."""
        self.pdf.set_font(self.family, "B" if bold else "", 9.5)
        lines = self.pdf.multi_cell(width, 5, self.text(text), dry_run=True, output="LINES")
        assert isinstance(lines, list)
        return len(lines)

    def _keep_together(self, label: str, value: str, label_width: float) -> None:
        """A new page before a label/value pair that would not fit in what is left of this one, when it fits on a
        page of its own; a longer pair starts on a new page unless at least three of its lines fit here."""
        pdf = self.pdf
        lines = max(self._lines(label_width, label, bold=True), self._lines(pdf.epw - label_width, value, bold=False))
        height = lines * 5 + 0.8
        room = pdf.page_break_trigger - pdf.get_y()
        page = pdf.page_break_trigger - pdf.t_margin
        if height > room and (height <= page or room < 3 * 5):
            pdf.add_page()

    def table(
        self,
        headings: Sequence[str],
        rows: Sequence[Sequence[object]],
        widths: Sequence[float],
        *,
        align: Sequence[str] | None = None,
        size: float = 9,
        emphasise_last: bool = False,
    ) -> None:
        """A table whose cells wrap; `widths` are relative; `align` is L/R/C per column."""
        pdf = self.pdf
        pdf.set_font(self.family, "", size)
        pdf.set_text_color(*INK)
        pdf.set_draw_color(*RULE)
        heading_style = FontFace(emphasis="BOLD", fill_color=HEADER_FILL, color=INK)
        with pdf.table(
            col_widths=tuple(widths),
            text_align=tuple(align) if align else "LEFT",
            line_height=size * 0.5,
            headings_style=heading_style,
            cell_fill_mode=TableCellFillMode.NONE,
            borders_layout="HORIZONTAL_LINES",
            padding=1.2,
        ) as table:
            header = table.row()
            for h in headings:
                header.cell(self.text(h))
            for i, values in enumerate(rows):
                style = FontFace(emphasis="BOLD") if emphasise_last and i == len(rows) - 1 else None
                row = table.row(style=style)
                for v in values:
                    row.cell(self.text(v))
        pdf.ln(3)

    def note(self, text: str, *, alert: bool = False) -> None:
        pdf = self.pdf
        pdf.set_text_color(*(ALERT if alert else MUTED))
        pdf.set_font(self.family, "", 8.5)
        pdf.multi_cell(0, 4.2, self.text(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)
        pdf.set_text_color(*INK)
        pdf.set_font(self.family, "", 10)

    def output(self) -> bytes:
        return bytes(self.pdf.output())
