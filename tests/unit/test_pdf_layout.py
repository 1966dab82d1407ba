"""The PDF documents' layout: a label is never left at the foot of a page with its value on the next (issue 14 §3)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pypdf import PdfReader

from services.finance.pdf import Document, Letterhead


def _pages(doc: Document) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(doc.output())).pages]


def _doc() -> Document:
    return Document("Evidence", letterhead=Letterhead("Labour Temple"), generated_at=datetime(2026, 3, 1, tzinfo=UTC))


def test_a_label_and_its_value_stay_on_one_page_wherever_the_page_ends() -> None:
    """Filler pushes the pair to every height near the foot of page 1: the label's page always holds its value."""
    for filler in range(40, 60):
        doc = _doc()
        doc.fields([(f"Filler {i}", "x") for i in range(filler)])
        doc.fields([("Terms accepted", "Accepted 2026-02-01 at 10:15 on the pay page, version 2026-01 " * 3)])
        pages = _pages(doc)
        label_page = next(i for i, text in enumerate(pages) if "Terms accepted" in text)
        assert "Accepted 2026-02-01" in pages[label_page], f"filler {filler}: the value went on without its label"


def test_a_value_longer_than_a_page_still_prints_in_full_starting_beside_its_label() -> None:
    doc = _doc()
    doc.fields([("Short", "x")] * 45)
    words = " ".join(f"word{i}" for i in range(2500))
    doc.fields([("Messages", words)])
    pages = _pages(doc)
    text = "".join(pages).replace("\n", " ")
    assert "word0 " in text and "word2499" in text
    label_page = next(i for i, t in enumerate(pages) if "Messages" in t)
    assert "word0" in pages[label_page]
