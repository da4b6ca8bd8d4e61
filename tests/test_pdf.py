"""Institutions come only from the first page: a PDF made here, served from a local server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fpdf import FPDF

from digestbot import subscribers
from digestbot.config import load_settings
from digestbot.enrich import prompts
from digestbot.enrich.pdf import extract_first_page
from digestbot.enrich.stored import get_enrichment
from digestbot.errors import PdfError
from digestbot.store import Store
from tests.fakes.http import FakeServer, Request, Response
from tests.fakes.openai import FakeOpenAI, ok
from tests.fakes.pipeline import run_pipeline
from tests.test_enrich import add_papers


def make_pdf(*pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


WITH_AFFILIATIONS = make_pdf(
    ["A Post-training Recipe with GRPO", "Ada Lovelace 1, Alan Turing 2",
     "1 Tsinghua University, Beijing", "2 Shanghai AI Laboratory", "Abstract. We study ..."],
    ["Related work at Stanford University is discussed on page two."],
)
WITHOUT = make_pdf(["A Post-training Recipe with GRPO", "Ada Lovelace, Alan Turing",
                    "Abstract. We study ..."])


class PdfHost:
    """`files[path] = pdf bytes` are served at DIGESTBOT_ARXIV_PDF_URL; other paths are 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.server = FakeServer(self.handle)

    def handle(self, req: Request) -> Response:
        if req.path not in self.files:
            return Response(404, "not found")
        return Response(200, self.files[req.path], {"Content-Type": "application/pdf"})


@pytest.fixture
def pdfs(monkeypatch: pytest.MonkeyPatch) -> Iterator[PdfHost]:
    host = PdfHost()
    with host.server:
        monkeypatch.setenv("DIGESTBOT_ARXIV_PDF_URL", f"{host.server.url}/pdf/")
        yield host


def enrich_one(store: Store) -> None:
    add_papers(store, ["A post-training recipe with GRPO"], affiliations=False)
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training"])
    run_pipeline(load_settings(), store)


def test_first_page_text_only() -> None:
    text = extract_first_page(WITH_AFFILIATIONS)
    assert "Tsinghua University, Beijing" in text and "Shanghai AI Laboratory" in text
    assert "Stanford" not in text


@pytest.mark.parametrize("data", [b"<html>captcha</html>", b"%PDF-1.7 truncated garbage"])
def test_not_a_readable_pdf(data: bytes) -> None:
    with pytest.raises(PdfError):
        extract_first_page(data)


def test_institutions_from_the_pdf_reach_the_prompt_and_the_entry(
        store: Store, fake: FakeOpenAI, pdfs: PdfHost, monkeypatch: pytest.MonkeyPatch) -> None:
    pdfs.files["/pdf/2608.00001v1"] = WITH_AFFILIATIONS
    enrich_one(store)
    [enrich] = [b for b in fake.bodies if "First page" in b["messages"][1]["content"]]
    prompt = enrich["messages"][1]["content"]
    assert "1 Tsinghua University, Beijing" in prompt and "Stanford" not in prompt
    e = get_enrichment(store, "2608.00001", 1)
    assert [i.name for i in e.institutions] == ["Tsinghua University, Beijing",
                                                "Shanghai AI Laboratory"]
    cached = store.db["first_pages"].get(("2608.00001", 1))
    assert cached["source"] == "pdf" and "Shanghai AI Laboratory" in cached["text"]
    # A new prompt version enriches again, from the cached page: the PDF is fetched once.
    monkeypatch.setattr(prompts, "PROMPT_VERSION", "enrich-test-v2")
    assert run_pipeline(load_settings(), store).enrich_calls == 1
    assert len(pdfs.server.requests) == 1
    assert get_enrichment(store, "2608.00001", 1).prompt_version == "enrich-test-v2"


def test_a_pdf_without_affiliations_gives_none(store: Store, fake: FakeOpenAI, pdfs) -> None:
    pdfs.files["/pdf/2608.00001v1"] = WITHOUT
    enrich_one(store)
    assert get_enrichment(store, "2608.00001", 1).institutions == []


def test_a_missing_pdf_gives_none_and_no_crash(store: Store, fake: FakeOpenAI, pdfs) -> None:
    enrich_one(store)  # the server answers 404
    assert [r.path for r in pdfs.server.requests] == ["/pdf/2608.00001v1"]
    e = get_enrichment(store, "2608.00001", 1)
    assert e.institutions == [] and e.title_zh  # enriched all the same
    assert "(not available" in fake.bodies[-1]["messages"][1]["content"]
    # arXiv says there is no such PDF: final, never asked again (unlike a page given up).
    assert store.db["first_pages"].get(("2608.00001", 1))["state"] == "no_text"


def test_invented_institutions_are_dropped(store: Store, fake: FakeOpenAI, pdfs) -> None:
    pdfs.files["/pdf/2608.00001v1"] = WITH_AFFILIATIONS
    fake.script(ok({"papers": [{"id": "2608.00001v1", "scores": [
                    {"topic": "post-training", "score": 90, "reason_zh": "GRPO"}]}]}),
                ok({"title_zh": "标题", "summary_zh": "本文提出方法。", "summary_en": "A method.",
                    "abstract_zh": "我们研究" * 20, "institutions": [
                        {"name": "Tsinghua University", "name_zh": "清华大学"},
                        {"name": "Massachusetts Institute of Technology", "name_zh": "麻省理工"}]}))
    enrich_one(store)
    e = get_enrichment(store, "2608.00001", 1)
    assert [(i.name, i.name_zh) for i in e.institutions] == [("Tsinghua University", "清华大学")]


def test_api_affiliations_come_first(store: Store, fake: FakeOpenAI, pdfs) -> None:
    add_papers(store, ["A post-training recipe with GRPO"])  # API affiliations: Tsinghua
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["post-training"])
    run_pipeline(load_settings(), store)
    assert pdfs.server.requests == []
    assert "Ada Lovelace: Tsinghua University" in fake.bodies[-1]["messages"][1]["content"]
    assert [i.name for i in get_enrichment(store, "2608.00001", 1).institutions] == [
        "Tsinghua University"]
