"""The text the institutions are taken from: feed/API affiliations, else the PDF's first page.

The feeds (`Name (Affiliation)` in dc:creator, the listing's author line) and the arXiv API
carry affiliations for a minority of papers; when they do they are used as they are and no
PDF is fetched. Otherwise, and only for a paper it is asked for (`FirstPages.get`: the caller
asks for the papers some reader will receive, earliest-due first), the PDF
(`{arxiv_pdf_url}{id}v{n}`) is downloaded through arXiv's process-wide gate
(`sources.http`: one request at a time, `arxiv_delay` apart, one breaker), page 1 is
extracted with pypdf, and the outcome is kept in `first_pages` so a PDF is fetched once:

- `fetched`: the page's text;
- `no_text`: arXiv has no such PDF (404/410) or none with readable text — final, "";
- `given_up`: arXiv was away, refusing, or its breaker was open — `get` returns `GivenUp`,
  the paper is final without institutions for now (never guessed), and a later `get` (see
  `enrich.institutions.fill_missing_institutions`) tries again.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from typing import Any

import pypdf

from digestbot.config import Settings
from digestbot.errors import DigestbotError, NetworkError, PdfError
from digestbot.models import Paper
from digestbot.sources.http import GATE, PoliteClient, record_breaker, recorded_breaker
from digestbot.store import Store, now_iso

log = logging.getLogger(__name__)

# Affiliations sit at the top (or in page-1 footnotes); the cap only bounds prompt cost.
MAX_CHARS = 6000
FETCHED, NO_TEXT, GIVEN_UP = "fetched", "no_text", "given_up"
# A breaker that will let a trial through this soon (a short Retry-After) is waited for;
# a longer outage gives the page up at once, so readers due now are not held by it.
SHORT_WAIT_S = 30.0
_NO_PDF = frozenset({404, 410})
# arXiv's breaker as the enrichment last saw it, for `/status` (which may be another process).


@dataclass(frozen=True)
class GivenUp:
    """No first page for now (arXiv unreachable or refusing): final without institutions."""

    reason: str


def page_text(page: str | GivenUp) -> str:
    """The text to read institutions from: "" for a page given up."""
    return page if isinstance(page, str) else ""


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
    """Blocking: fetch the PDF of that version (the latest while unknown), extract page 1.

    PdfError when there is no readable PDF (final); NetworkError when arXiv did not give it
    (unreachable, refusing, a server error: worth another try later)."""
    response = client.get(f"{base_url}{arxiv_id}" + (f"v{version}" if version else ""))
    if response.status_code in _NO_PDF:
        raise PdfError(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise NetworkError(f"PDF answered HTTP {response.status_code}")
    return extract_first_page(response.content)


class FirstPages:
    """First-page text per paper version, downloaded only for the papers asked for.

    Downloads run in a worker thread, one at a time (the gate would serialise them anyway,
    and a queue of blocked threads would starve the default executor); the store is only
    touched from the caller's thread, which owns the connection.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._client = PoliteClient(settings.arxiv_delay)
        self._turn = asyncio.Lock()
        self.downloads = 0  # PDFs asked of arXiv by this instance
        self.given_up = 0  # pages given up by this instance

    def close(self) -> None:
        self._client.close()

    @property
    def breaker_open(self) -> bool:
        """True while arXiv's breaker refuses requests: a `get` now gives the page up at once
        (unless the trial is due within SHORT_WAIT_S)."""
        return GATE.is_open

    def _row(self, paper: Paper) -> dict | None:
        rows = list(self.store.db.query(
            "select text, state from first_pages where arxiv_id = ? and version = ?",
            [paper.id, paper.version]))
        return rows[0] if rows else None

    def cached(self, arxiv_id: str, version: int) -> str | None:
        """The stored text of a page fetched (or found to have none); None otherwise."""
        rows = list(self.store.db.query(
            "select text from first_pages where arxiv_id = ? and version = ? and state != ?",
            [arxiv_id, version, GIVEN_UP]))
        return rows[0]["text"] if rows else None

    def state(self, paper: Paper) -> str | None:
        """`fetched` (feed/API affiliations count), `no_text`, `given_up`, or None: not asked."""
        if affiliations_text(paper):
            return FETCHED
        row = self._row(paper)
        return row["state"] if row else None

    async def get(self, paper: Paper) -> str | GivenUp:
        """The paper's institutions text, fetching its PDF if need be; GivenUp while arXiv is
        away. Call it only for a paper some reader will receive."""
        from_api = affiliations_text(paper)
        if from_api:
            return from_api
        row = self._row(paper)
        if row is not None and row["state"] != GIVEN_UP:
            return row["text"]
        async with self._turn:
            wait = GATE.breaker.remaining()
            if GATE.is_open and wait > SHORT_WAIT_S:
                return self._give_up(paper, f"arXiv breaker open for another {wait:.0f} s")
            if wait > 0:
                await asyncio.sleep(wait)
            self.downloads += 1
            try:
                text = await asyncio.to_thread(download_first_page, self._client,
                                               self.settings.arxiv_pdf_url, paper.id, paper.version)
            except PdfError as exc:
                log.warning("no first page for %s: %s", paper.versioned_id, exc)
                text = ""
            except DigestbotError as exc:  # NetworkError, ArxivDown: maybe later
                return self._give_up(paper, str(exc))
        self._save(paper, text, FETCHED if text else NO_TEXT)
        return text

    def _give_up(self, paper: Paper, reason: str) -> GivenUp:
        # The first is worth a warning; with the breaker open, the rest say nothing new.
        log.log(logging.DEBUG if self.given_up else logging.WARNING,
                "first page of %s given up for now: %s", paper.versioned_id, reason)
        self.given_up += 1
        self._save(paper, "", GIVEN_UP)
        return GivenUp(reason)

    def _save(self, paper: Paper, text: str, state: str) -> None:
        self.store.db["first_pages"].upsert(
            {"arxiv_id": paper.id, "version": paper.version, "text": text, "source": "pdf",
             "state": state, "fetched_at": now_iso()}, pk=("arxiv_id", "version"))
        record_breaker(self.store)


def given_up(store: Store, limit: int | None = None) -> list[tuple[str, int]]:
    """(arxiv_id, version) of the pages given up, most recent first."""
    rows = store.db.query(
        "select arxiv_id, version from first_pages where state = ? order by fetched_at desc"
        + (" limit ?" if limit is not None else ""),
        [GIVEN_UP] + ([limit] if limit is not None else []))
    return [(r["arxiv_id"], r["version"]) for r in rows]


def arxiv_status(store: Store) -> dict[str, Any]:
    """For `/status`: arXiv's breaker as last recorded (None before any PDF was asked for)
    and the first pages per state (`given_up`: institutions still to fill in)."""
    counts = {r["state"]: r["n"] for r in store.db.query(
        "select state, count(*) n from first_pages group by state")}
    return {"breaker": recorded_breaker(store),
            "first_pages": {state: counts.get(state, 0) for state in (FETCHED, NO_TEXT, GIVEN_UP)}}
