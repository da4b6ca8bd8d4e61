"""The offline scorer: weighted term matching, deterministic and explainable.

It runs with no API key and is the fallback whenever the LLM fails, so its scores sit on the
same 0–100 scale with the same meaning: a clearly on-topic paper ≥ 70, an unrelated one < 40.

How a score is made (weights from topics.toml: core 3, strong 2, related 1, negative -3):
- every term or alias of the topic is searched in the title and the abstract; overlapping
  terms count once, the longest wins (`process reward model` is not also `reward model`);
- a term contributes weight × 2 if it is in the title, plus weight × 1 if it is in the
  abstract (up to × 1.5 when repeated there);
- related terms (weight 1) only count next to a core or strong hit, and together add at most
  RELATED_CAP, so "large language model" alone never makes a paper relevant;
- negative cues (`training-free` for 后训练) subtract the same way: the topic excludes them;
- the sum is squashed to 0–100 by 100·(1 − e^(−sum/9)): a core term in title and abstract
  (3·2 + 3 = 9) with a little support clears 70; one strong mention (2) stays at 20.
The reason names the counted terms, strongest first: `命中: GRPO, reward model`, and the
negative cues after them (`; 反例: training-free`).

Matching works on tokens, not one big regex per topic: a text is tokenized once (cached) and
each term is a dictionary lookup, which keeps 1,500 papers × 30 topics to a few seconds.
English tokens compare casefolded with a plural `s` dropped; tokens written with two or more
capitals (GRPO, LoRA, SFT) compare exactly. Hyphen, space and no space are the same
(`fine-tuning` = `fine tuning` = `finetuning`). Chinese terms match as substrings.

The stored offline score (`score_papers_offline`, scorer `offline-v2`) blends that keyword
evidence with semantic closeness from local embeddings (`semantic.closeness`: cosine to the
topic minus the topic's background, see there), so a paper that uses none of the topic's words
is no longer scored 0 when it is about the topic:
- closeness above SEM_NEUTRAL adds SEM_WEIGHT per unit to the keyword sum (÷ SCALE); it
  never takes away: keyword evidence stays what it was (demoting keyword hits in papers that
  read as far from the topic cost more recall than it saved false hits on the labelled set);
- closeness alone gives 100·(1 − e^(−SEM_ALONE_SLOPE·(closeness − SEM_ALONE_FROM))): about 40
  for a paper as near as the topic's nearest tenth of other catalogue topics (closeness 0),
  60 from closeness 0.17 (very near) on;
- the score is the larger of the two. The reason keeps the matched terms and says how the
  meaning compares (`语义相近 / semantically close`), or that no keyword matched.
The constants were set on tests/fixtures/labelled (392 real papers, 5 topics, hand-labelled);
bench/offline.py prints recall and false hits before and after.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from digestbot import embed
from digestbot.enrich import semantic
from digestbot.models import Paper, Topic
from digestbot.topics import is_cjk

SCORER = "offline-v2"

TITLE_FACTOR = 2.0
REPEAT_BONUS = 0.25  # per extra mention in the abstract…
REPEAT_CAP = 1.5  # …up to this factor
RELATED_CAP = 2.5
SCALE = 9.0
DEFAULT_WEIGHT = 2  # aliases and terms without a tier
MAX_REASON_TERMS = 6
NO_MATCH = "未命中关键词 / no keyword matched"
# The blend with semantic closeness (see the module docstring).
SEM_WEIGHT = 3.0
SEM_NEUTRAL = 0.10
SEM_ALONE_SLOPE = 2.5
SEM_ALONE_FROM = -0.20
CLOSE = "语义相近 / semantically close"
RELATED = "语义略近 / loosely related"
DISTANT = "语义较远 / semantically distant"

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+")
Key = tuple[str, str]  # ("x", exact form) for acronyms, ("f", folded stem) otherwise


def _is_acronym(token: str) -> bool:
    return sum(ch.isupper() for ch in token) >= 2


def _fold(token: str) -> str:
    low = token.casefold()
    if len(low) > 3 and low.endswith("s") and not low.endswith("ss"):
        return low[:-1]
    return low


def _exact(token: str) -> str:
    return token[:-1] if token.endswith("s") and _is_acronym(token[:-1]) else token


def _term_key(token: str) -> Key:
    return ("x", _exact(token)) if _is_acronym(token) else ("f", _fold(token))


@dataclass(frozen=True)
class _Term:
    text: str  # as the catalogue spells it, for the reason
    weight: int
    variants: tuple[tuple[Key, ...], ...]  # token sequences; empty for a Chinese term


@dataclass(frozen=True)
class _Matcher:
    terms: tuple[_Term, ...]
    # First token key → (term index, variant): a text's tokens meet the few terms they can
    # start in one set intersection, instead of every term being tried on every text (the
    # whole catalogue is scored offline each day, ~50,000 paper × topic pairs).
    starts: dict[Key, tuple[tuple[int, tuple[Key, ...]], ...]]
    cjk: tuple[int, ...]  # indexes of Chinese terms, matched as substrings


def _compile_term(term: str, weight: int) -> _Term:
    if is_cjk(term):
        return _Term(term, weight, ())
    tokens = _TOKEN_RE.findall(term)
    variants = [tuple(_term_key(t) for t in tokens)]
    if len(tokens) > 1 and not any(_is_acronym(t) for t in tokens):
        variants.append((_term_key("".join(tokens)),))  # "finetuning", "posttraining"
    return _Term(term, weight, tuple(variants))


def _build_matcher(topic: Topic) -> _Matcher:
    seen: dict[str, _Term] = {}
    # Negative cues live only in term_weights (they are not terms of the topic).
    for term in (*topic.terms_en, *topic.terms_zh, *topic.aliases, *topic.term_weights):
        norm = unicodedata.normalize("NFKC", term).strip()
        compiled = _compile_term(norm, topic.term_weights.get(term, DEFAULT_WEIGHT))
        key = norm if compiled.variants == () else repr(compiled.variants[0])
        if norm and key not in seen and (compiled.variants == () or compiled.variants[0]):
            seen[key] = compiled
    terms = tuple(seen.values())
    starts: dict[Key, list[tuple[int, tuple[Key, ...]]]] = defaultdict(list)
    for idx, term in enumerate(terms):
        for variant in term.variants:
            starts[variant[0]].append((idx, variant))
    return _Matcher(terms, {k: tuple(v) for k, v in starts.items()},
                    tuple(i for i, t in enumerate(terms) if not t.variants))


_matchers: dict[str, tuple[tuple, _Matcher]] = {}
# The same Topic object again needs no signature: topics are never changed in place (the
# catalogue is parsed once per process; a custom topic is built anew from its row).
_last: dict[str, tuple[Topic, _Matcher]] = {}


def _matcher(topic: Topic) -> _Matcher:
    """Compiled once per topic; rebuilt only if the topic's terms changed."""
    last = _last.get(topic.slug)
    if last is not None and last[0] is topic:
        return last[1]
    signature = (tuple(topic.terms_en), tuple(topic.terms_zh), tuple(topic.aliases),
                 tuple(sorted(topic.term_weights.items())))
    cached = _matchers.get(topic.slug)
    if cached is None or cached[0] != signature:
        cached = (signature, _build_matcher(topic))
        _matchers[topic.slug] = cached
    _last[topic.slug] = (topic, cached[1])
    return cached[1]


@dataclass(frozen=True)
class _Text:
    text: str
    keys: tuple[tuple[Key, Key], ...]  # per token: (exact key, folded key)
    spans: tuple[tuple[int, int], ...]  # per token: character span
    positions: dict[Key, list[int]]  # key → token indexes where it occurs


# Callers score one paper against every topic in a row, so the same text is reused ~30 times.
@lru_cache(maxsize=1024)
def _prepare(text: str) -> _Text:
    text = unicodedata.normalize("NFKC", text)
    keys: list[tuple[Key, Key]] = []
    spans: list[tuple[int, int]] = []
    positions: dict[Key, list[int]] = defaultdict(list)
    for i, m in enumerate(_TOKEN_RE.finditer(text)):
        token = m.group()
        exact, folded = ("x", _exact(token)), ("f", _fold(token))
        keys.append((exact, folded))
        spans.append(m.span())
        positions[exact].append(i)
        if folded != exact:
            positions[folded].append(i)
    return _Text(text, tuple(keys), tuple(spans), dict(positions))


def _found(matcher: _Matcher, prepared: _Text) -> list[tuple[int, int, int]]:
    """(start, end, term index) of every occurrence of every term, as character spans."""
    out = []
    for idx in matcher.cjk:
        term = matcher.terms[idx].text
        start = prepared.text.find(term)
        while start >= 0:
            out.append((start, start + len(term), idx))
            start = prepared.text.find(term, start + len(term))
    for key in matcher.starts.keys() & prepared.positions.keys():
        for idx, variant in matcher.starts[key]:
            for i in prepared.positions[key]:
                end = i + len(variant)
                if end <= len(prepared.keys) and all(
                    want in prepared.keys[i + j] for j, want in enumerate(variant)
                ):
                    out.append((prepared.spans[i][0], prepared.spans[end - 1][1], idx))
    return out


def _counts(matcher: _Matcher, text: str) -> dict[int, int]:
    """Term index → number of non-overlapping occurrences (longest term wins a span)."""
    if not text:
        return {}
    found = _found(matcher, _prepare(text))
    found.sort(key=lambda f: (f[0], f[0] - f[1], f[2]))
    counts: dict[int, int] = {}
    taken_until = -1
    for start, end, idx in found:
        if start < taken_until:
            continue
        counts[idx] = counts.get(idx, 0) + 1
        taken_until = end
    return counts


def score_offline(title: str, abstract: str, topic: Topic) -> tuple[int, str]:
    """The keyword score alone of one paper for one topic: (0–100, `命中: term, term…`)."""
    evidence, reason = _keyword_evidence(title, abstract, topic)
    return round(100 * (1 - math.exp(-evidence))), reason


def score_papers_offline(work: Sequence[tuple[Paper, Sequence[Topic]]]
                         ) -> list[list[tuple[int, str]]]:
    """For each (paper, its topics): the blended (score, reason) per topic, in order. The
    papers are embedded once, in one batch."""
    topics = {t.slug: t for _, wanted in work for t in wanted}
    slugs = sorted(topics)
    column = {slug: j for j, slug in enumerate(slugs)}
    near = semantic.closeness(embed.embed_papers([paper for paper, _ in work]),
                              [topics[slug] for slug in slugs])
    return [[blend(*_keyword_evidence(paper.title, paper.abstract, t),
                   float(near[i, column[t.slug]])) for t in wanted]
            for i, (paper, wanted) in enumerate(work)]


def blend(evidence: float, reason: str, closeness: float) -> tuple[int, str]:
    """Keyword evidence (the keyword sum ÷ SCALE) and semantic closeness → (0–100, reason)."""
    combined = evidence + SEM_WEIGHT * max(closeness - SEM_NEUTRAL, 0.0)
    alone = SEM_ALONE_SLOPE * (closeness - SEM_ALONE_FROM)
    score = round(100 * (1 - math.exp(-max(combined, alone, 0.0))))
    band = CLOSE if closeness >= SEM_NEUTRAL else RELATED if closeness >= 0 else DISTANT
    return score, f"{reason}; {band}"


def _keyword_evidence(title: str, abstract: str, topic: Topic) -> tuple[float, str]:
    """The keyword sum ÷ SCALE (0 when nothing counts) and its reason."""
    matcher = _matcher(topic)
    in_title = _counts(matcher, title)
    in_abstract = _counts(matcher, abstract)
    hit = set(in_title) | set(in_abstract)
    contributions: dict[int, float] = {}
    for i in hit:
        factor = TITLE_FACTOR if i in in_title else 0.0
        if n := in_abstract.get(i, 0):
            factor += min(1 + REPEAT_BONUS * (n - 1), REPEAT_CAP)
        contributions[i] = matcher.terms[i].weight * factor
    anchors = {i: c for i, c in contributions.items() if matcher.terms[i].weight >= 2}
    if not anchors:
        return 0.0, NO_MATCH
    support = sum(c for i, c in contributions.items() if matcher.terms[i].weight == 1)
    against = [i for i in contributions if matcher.terms[i].weight < 0]
    total = (sum(anchors.values()) + min(support, RELATED_CAP)
             + sum(contributions[i] for i in against))
    # Strongest first, ties in catalogue order, so the reason is stable.
    ranked = sorted((i for i in contributions if i not in against),
                    key=lambda i: (-contributions[i], i))
    reason = "命中: " + ", ".join(matcher.terms[i].text for i in ranked[:MAX_REASON_TERMS])
    if against:
        reason += "; 反例: " + ", ".join(matcher.terms[i].text for i in sorted(against))
    return max(total, 0.0) / SCALE, reason


# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "e.g", "i.e", "et", "al", "etc", "cf", "vs", "fig", "figs", "eq", "eqs", "sec", "secs",
        "tab", "ref", "refs", "no", "nos", "approx", "resp", "dr", "mr", "mrs", "ms", "prof", "st",
        "vol", "pp", "ch", "appx", "incl", "est"
    ]
)
_END_RE = re.compile(r"[.!?](?=[\"')\]]*\s+[\"'(\[]?[A-Z0-9])|[。！？]")


def first_sentence(text: str) -> str:
    """The abstract's first sentence: the offline one-line summary.

    A period ends a sentence only before whitespace and a capital or digit, and not after an
    abbreviation (e.g., et al., Fig.), so "3.5", "e.g. GRPO" and "Fig. 2" stay inside the
    sentence. Initials are not special-cased: abstracts rarely name people, while
    "in Appendix A." does end sentences.
    """
    text = " ".join(text.split())
    for m in _END_RE.finditer(text):
        if m.group() == ".":
            word = re.search(r"([A-Za-z.]+)$", text[: m.start()])
            token = word.group(1).lower().strip(".") if word else ""
            if token in _ABBREVIATIONS or token.rsplit(".", 1)[-1] in _ABBREVIATIONS:
                continue
        return text[: m.end()].strip()
    return text
