"""A per-reader re-ranker learned from their 👍/👎 (issue 17): arxiv-sanity's idea, per reader.

A small linear model (scikit-learn's LogisticRegression) over each paper's embedding
(`digestbot.embed`) and its scores for the reader's topics, trained from that reader's votes
only, re-orders their digest and may add a few papers that missed their thresholds ("你可能喜欢
/ you may like", with the liked paper they are nearest to as the reason). With fewer than
`MIN_VOTES` votes, or votes of one kind only, there is nothing to learn from and the digest is
left exactly as selection made it. Training takes milliseconds and nothing is stored but the
votes: the model is rebuilt from them when a digest is made, so `/forget` (delete the votes)
resets it and no stale model outlives a change of mind. No LLM call, nothing leaves the host.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from digestbot.enrich.topic_scores import subscribed_scores
from digestbot.models import Paper, TopicHit
from digestbot.sources.papers import announcements_on, get_papers
from digestbot.store import Store
from digestbot.subscribers import feedback

if TYPE_CHECKING:
    from types import ModuleType

    from sklearn.linear_model import LogisticRegression

MIN_VOTES = 5
# At most this many papers under the reader's thresholds join a digest, and only those the
# model is fairly sure of: a suggestion that misses costs the reader's trust.
MAY_LIKE = 3
MAY_LIKE_MIN_P = 0.6
# Topic scores enter as score/100 times this, beside unit-length embeddings: large enough that
# the reader's topics still count, small enough that the text decides among papers that all
# hit them (bench/feedback.py: 0.3 beat 1.0 by ~10 points of precision@10).
SCORE_WEIGHT = 0.3
# Inverse regularisation. Embedding components are small (unit rows over 256 dimensions), so
# C=1 leaves the text weights near zero after 20 votes; 10 lets them speak (bench/feedback.py:
# +32 points of precision@10 after 20 votes against +17 at C=1; 100 and up gains little more).
C = 10.0
SUGGESTED = "~may-like"  # the pseudo-topic of a suggestion's TopicHit (never a catalogue slug)
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{3,}")
_STOP = frozenset((
    "this", "that", "with", "from", "have", "these", "their", "which", "using", "based",
    "paper", "propose", "proposed", "show", "results", "approach", "method", "methods",
    "model", "models", "task", "tasks", "data", "also", "into", "than", "more", "such", "both",
    "while", "however", "where", "when", "over", "only", "other", "between", "through", "each",
    "first", "well", "were", "been", "being", "work",
))

_VECTORS: dict[tuple[str, int | None], np.ndarray] = {}
_VECTORS_MAX = 50_000
_lock = threading.Lock()


@functools.cache
def _logistic_regression() -> type[LogisticRegression]:
    """scikit-learn, imported when a first model is trained (see `_embed`)."""
    return importlib.import_module("sklearn.linear_model").LogisticRegression


@functools.cache
def _embed() -> ModuleType:
    """`digestbot.embed` (wordllama) and, above, scikit-learn are imported on first use only.
    Importing them (and the scipy sklearn pulls in) costs seconds of CPU, and every process
    that imports selection — each CLI command, the web app — would pay it while most never
    train a model: a reader without votes costs nothing. importlib only defers that cost (no
    cycle is dodged: both sit below this module); the dependencies are plain and locked."""
    return importlib.import_module("digestbot.embed")


def _label(lang: str, zh: str, en: str) -> str:
    """The suggestion's words in the digest's language (selection's hits use zh or en)."""
    return en if lang == "en" else zh


def vectors(papers: Sequence[Paper]) -> np.ndarray:
    """The papers' embeddings, computed once per paper version in this process (a day's
    papers are shared by every reader who voted; ~1 KB each, dropped wholesale when full)."""
    with _lock:
        missing = [p for p in papers if (p.id, p.version) not in _VECTORS]
        if missing:
            if len(_VECTORS) + len(missing) > _VECTORS_MAX:
                _VECTORS.clear()
            for paper, vec in zip(missing, _embed().embed_papers(missing), strict=True):
                _VECTORS[(paper.id, paper.version)] = vec
        if not papers:
            return np.zeros((0, _embed().DIM), dtype=np.float32)
        return np.stack([_VECTORS[(p.id, p.version)] for p in papers])


def _score_features(rows: Iterable[dict[str, Any]], ids: Sequence[str],
                    topics: Sequence[str]) -> np.ndarray:
    """ids × topics: each paper's best score for each topic, scaled to [0, SCORE_WEIGHT]."""
    col = {t: j for j, t in enumerate(topics)}
    row_of = {pid: i for i, pid in enumerate(ids)}
    out = np.zeros((len(ids), len(topics)), dtype=np.float32)
    for r in rows:
        i, j = row_of.get(r["arxiv_id"]), col.get(r["topic"])
        if i is not None and j is not None:
            out[i, j] = max(out[i, j], r["score"] * SCORE_WEIGHT / 100)
    return out


@dataclass
class Learned:
    """One reader's model and what it was trained on."""

    subscriber_id: int
    topics: list[str]
    model: LogisticRegression
    liked: list[Paper]
    liked_vectors: np.ndarray
    ups: int
    downs: int
    voted: frozenset[str] = frozenset()  # never suggested: the reader has seen them

    def features(self, papers: Sequence[Paper], rows: Iterable[dict[str, Any]]) -> np.ndarray:
        ids = [p.id for p in papers]
        return np.hstack([vectors(papers), _score_features(rows, ids, self.topics)])

    def rank(self, store: Store, ranked: list[str], pinned: Iterable[str],
             pool: dict[str, list[dict[str, Any]]], rows: dict[str, list[dict[str, Any]]],
             lang: str) -> tuple[list[str], dict[str, TopicHit]]:
        """`ranked` re-ordered by the model (`pinned` papers, the followed authors', stay
        first, in their order) with at most `MAY_LIKE` papers of `pool` (papers of the window
        under every threshold: id → score rows) merged in at their place; the suggestions'
        reasons. `rows` holds the score rows of the ranked papers."""
        first = set(pinned)
        pinned = [pid for pid in ranked if pid in first]
        rest = [pid for pid in ranked if pid not in first]
        ids = rest + sorted(pid for pid in pool if pid not in self.voted)
        papers = get_papers(store, ids)
        ids = [pid for pid in ids if pid in papers]
        if not ids:
            return ranked, {}
        plist = [papers[pid] for pid in ids]
        all_rows = [r for pid in ids for r in (rows.get(pid) or pool.get(pid) or ())]
        x = self.features(plist, all_rows)
        score = self.model.decision_function(x)
        prob = self.model.predict_proba(x)[:, list(self.model.classes_).index(1)]
        by = dict(zip(ids, score, strict=True))
        picked = sorted((pid for pid, p in zip(ids, prob, strict=True)
                         if pid in pool and p >= MAY_LIKE_MIN_P), key=lambda pid: -by[pid])
        picked = picked[:MAY_LIKE]
        suggestions = {}
        if picked:
            near = _embed().cosine(vectors([papers[pid] for pid in picked]), self.liked_vectors)
            for n, pid in enumerate(picked):
                liked = self.liked[int(np.argmax(near[n]))]
                p = float(prob[ids.index(pid)])
                suggestions[pid] = TopicHit(
                    topic=SUGGESTED, topic_name=_label(lang, "你可能喜欢", "You may like"),
                    score=round(100 * p), reason=_label(
                        lang, f"与你赞过的《{liked.title[:80]}》相近",
                        f"close to “{liked.title[:80]}” you liked"))
        order = sorted([pid for pid in rest if pid in by] + picked, key=lambda pid: -by[pid])
        # A ranked paper the store no longer has keeps its place at the end (never dropped).
        order += [pid for pid in rest if pid not in by]
        return pinned + order, suggestions

    def favourites(self, n: int) -> list[str]:
        """The titles of the liked papers the model ranks highest (what `/learned` shows)."""
        x = np.hstack([self.liked_vectors, np.zeros((len(self.liked), len(self.topics)))])
        order = np.argsort(-self.model.decision_function(x))
        return [self.liked[i].title for i in order[:n]]

    def top_words(self, store: Store, n: int = 8) -> tuple[list[str], list[str]]:
        """Words from the voted papers the model leans toward most and least (what `/learned`
        shows): each word's embedding scored by the model's text weights."""
        voted = get_papers(store, [v.arxiv_id for v in feedback.votes(
            store, self.subscriber_id, feedback.TRAIN_LIMIT)])
        words = sorted({w.lower() for p in voted.values() for w in _WORD.findall(f"{p.title} {p.abstract}")
                        if w.lower() not in _STOP})
        if not words:
            return [], []
        weights = self.model.coef_[0][:_embed().DIM]
        lean = _embed().embed(words) @ weights
        order = np.argsort(-lean)
        return ([words[i] for i in order[:n] if lean[i] > 0],
                [words[i] for i in order[::-1][:n] if lean[i] < 0])


def learn(store: Store, subscriber_id: int, topics: Sequence[str]) -> Learned | None:
    """The reader's model, trained now from their latest votes; None with fewer than
    `MIN_VOTES` or only one kind (then their digest is left as it is)."""
    votes = feedback.votes(store, subscriber_id, feedback.TRAIN_LIMIT)
    if len(votes) < MIN_VOTES or len({v.vote for v in votes}) < 2:
        return None  # most readers: one indexed query, nothing else
    papers = get_papers(store, [v.arxiv_id for v in votes])
    votes = [v for v in votes if v.arxiv_id in papers]
    ups = sum(v.vote == feedback.UP for v in votes)
    if len(votes) < MIN_VOTES or ups in (0, len(votes)):
        return None
    ids = [v.arxiv_id for v in votes]
    plist = [papers[pid] for pid in ids]
    rows = subscribed_scores(store, subscriber_id, ids, "9999-12-31") if topics else []
    topics = list(topics)
    x = np.hstack([vectors(plist), _score_features(rows, ids, topics)])
    y = np.array([1 if v.vote == feedback.UP else 0 for v in votes])
    # liblinear: a few hundred rows of ~260 features fit in milliseconds, single-threaded;
    # lbfgs took 5-10× longer here, most of it in BLAS threads contending on a busy host.
    model = _logistic_regression()(C=C, class_weight="balanced", solver="liblinear",
                                   max_iter=200).fit(x, y)
    liked = [papers[v.arxiv_id] for v in votes if v.vote == feedback.UP]
    return Learned(subscriber_id, topics, model, liked,
                   vectors(liked), ups, len(votes) - ups, frozenset(ids))


def pool_rows(store: Store, subscriber_id: int, window: Sequence[str], date: str,
              skip: Iterable[str]) -> list[dict[str, Any]]:
    """Score rows (for the reader's topics) of the papers announced in `window` that are not in
    `skip`: where suggestions come from."""
    skip = set(skip)
    ids = sorted({a.arxiv_id for day in set(window) for a in announcements_on(store, day)} - skip)
    return subscribed_scores(store, subscriber_id, ids, date) if ids else []
