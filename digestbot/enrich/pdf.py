"""The text the institutions are taken from: feed/API affiliations, else the PDF's first page.

The feeds (`Name (Affiliation)` in dc:creator, the listing's author line) and the arXiv API
carry affiliations for a minority of papers; when they do they are used as they are and no
PDF is fetched. Otherwise the PDF (`{arxiv_pdf_url}{id}v{n}`) is downloaded through the same
polite, process-wide throttled client as every other arXiv request, page 1 is extracted with
pypdf, and the text is cached in `first_pages` so a paper's PDF is fetched once. Any failure
(network, not a PDF, a PDF pypdf cannot read) gives "" — the paper is shown without
institutions, never with guessed ones.
"""

from __future__ import annotations

import asyncio
import io
import logging

import pypdf

from digestbot.config import Settings
from digestbot.errors import DigestbotError, PdfError
from digestbot.models import Paper
from digestbot.sources.http import PoliteClient
from digestbot.store import Store, now_iso

log = logging.getLogger(__name__)

# Affiliations sit at the top (or in page-1 footnotes); the cap only bounds prompt cost.
MAX_CHARS = 6000


def affiliations_text(paper: Paper) -> str:
    """`Author: affiliation; affiliation` lines from the feed/API metadata, "" when none."""
    lines = [f"{a.name}: {'; '.join(a.affiliations)}" for a in paper.authors if a.affiliations]
    return "\n".join(lines)


def extract_first_page(data: bytes) -> str:
    """Text of page 1, whitespace-tidied and capped at MAX_CHARS."""
    if not data.lstrip().startswith(b"%PDF"):
        raise PdfError("not a PDF")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        text = reader.pages[0].extract_text() if reader.pages else ""
    # pypdf parses untrusted bytes and can raise nearly anything on a damaged file.
    except Exception as exc:
        raise PdfError(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    lines = (" ".join(line.split()) for line in (text or "").splitlines())
    return "\n".join(line for line in lines if line)[:MAX_CHARS]


def download_first_page(client: PoliteClient, base_url: str, arxiv_id: str,
                        version: int | None) -> str:
    """Blocking: fetch the PDF of that version (the latest while unknown), extract page 1."""
    response = client.get(f"{base_url}{arxiv_id}" + (f"v{version}" if version else ""))
    if response.status_code != 200:
        raise PdfError(f"HTTP {response.status_code}")
    return extract_first_page(response.content)


class FirstPages:
    """First-page text per paper version for one pipeline run (owns its HTTP client).

    Downloads run in a worker thread, one at a time (the throttle would serialise them
    anyway, and a queue of blocked threads would starve the default executor); the store is
    only touched from the caller's thread, which owns the connection.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._client: PoliteClient | None = None
        self._turn = asyncio.Lock()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def cached(self, arxiv_id: str, version: int) -> str | None:
        rows = list(self.store.db.query(
            "select text from first_pages where arxiv_id = ? and version = ?", [arxiv_id, version]))
        return rows[0]["text"] if rows else None

    async def get(self, paper: Paper) -> str:
        from_api = affiliations_text(paper)
        if from_api:
            return from_api
        cached = self.cached(paper.id, paper.version)
        if cached is not None:
            return cached
        if self._client is None:
            self._client = PoliteClient(self.settings.arxiv_delay)
        async with self._turn:
            try:
                text = await asyncio.to_thread(download_first_page, self._client,
                                               self.settings.arxiv_pdf_url, paper.id, paper.version)
            # PdfError is a DigestbotError too: any failure means no first page, not a crash.
            except DigestbotError as exc:
                log.warning("no first page for %s: %s", paper.versioned_id, exc)
                return ""
        self.store.db["first_pages"].upsert(
            {"arxiv_id": paper.id, "version": paper.version, "text": text, "source": "pdf",
             "fetched_at": now_iso()}, pk=("arxiv_id", "version"))
        return text
