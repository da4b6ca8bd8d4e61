"""The topic catalogue (topics.toml), lookup by name or alias, and custom topics.

A subscriber names a topic however they like — `后训练`, `Post-Training`, `ＧＲＰＯ`, ` 后 训练 ` —
and `lookup` finds it; a name we do not know gets `suggest`ions instead of a silent miss. Free
text that is not in the catalogue can become a custom topic (`custom_topic`), stored once per
distinct text so every subscriber of the same words shares one topic and its cached scores.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import tomllib
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import sqlite_utils

from digestbot.errors import UsageError
from digestbot.models import Topic
from digestbot.store import Store, now_iso

log = logging.getLogger(__name__)

TIER_WEIGHTS: dict[str, int] = {"core": 3, "strong": 2, "related": 1, "negative": -3}
CUSTOM_AREA = "自定义 / Custom"
CUSTOM_MAX_CHARS = 200
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# An arXiv category: archive (cs, eess, stat…) and an optional subject class.
CATEGORY_RE = re.compile(r"^[a-z][a-z-]*(?:\.[A-Za-z]{2,})?$")


@dataclass(frozen=True)
class Group:
    name_zh: str
    name_en: str
    description: str
    categories: tuple[str, ...]
    topics: tuple[Topic, ...]


@dataclass(frozen=True)
class Area:
    name_zh: str
    name_en: str
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Catalogue:
    areas: tuple[Area, ...]
    topics: dict[str, Topic]
    # normalized name/alias/slug → slug
    index: dict[str, str] = field(repr=False)


# -- normalization ---------------------------------------------------------------------------

_SPACE_RE = re.compile(r"\s+")
_JOINERS_RE = re.compile(r"[-_‐‑–—·・]")


def normalize(text: str) -> str:
    """The key names are compared by: NFKC (全角 → 半角), casefolded, whitespace removed."""
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", text).casefold())


def _keys(text: str) -> set[str]:
    """Index keys of one name: also without hyphens, so `post training` finds `post-training`."""
    key = normalize(text)
    return {key, _JOINERS_RE.sub("", key)} - {""}


# -- the catalogue ----------------------------------------------------------------------------


def _read_catalogue_file() -> dict[str, Any]:
    data = resources.files("digestbot").joinpath("topics.toml").read_text(encoding="utf-8")
    return tomllib.loads(data)


def _tiered(raw: dict[str, list[str]], where: str) -> tuple[list[str], dict[str, int]]:
    """Flatten tiers into terms and weights; negative cues get a weight but are not terms."""
    terms: list[str] = []
    weights: dict[str, int] = {}
    for tier, words in raw.items():
        if tier not in TIER_WEIGHTS:
            raise ValueError(f"topics.toml: {where}: unknown term tier {tier!r}")
        for word in words:
            if word not in weights:
                weights[word] = TIER_WEIGHTS[tier]
                if weights[word] > 0:
                    terms.append(word)
    return terms, weights


def _build_topic(raw: dict[str, Any], area: str, group: str, group_cats: list[str]) -> Topic:
    slug = raw["slug"]
    if not SLUG_RE.match(slug):
        raise ValueError(f"topics.toml: slug {slug!r} must be lowercase ascii words joined by -")
    terms_en, weights_en = _tiered(raw.get("terms_en", {}), slug)
    terms_zh, weights_zh = _tiered(raw.get("terms_zh", {}), slug)
    categories = list(raw.get("categories") or group_cats)
    for cat in categories:
        if not CATEGORY_RE.match(cat):
            raise ValueError(f"topics.toml: {slug}: {cat!r} is not an arXiv category")
    return Topic(
        slug=slug,
        name_zh=raw["name_zh"],
        name_en=raw["name_en"],
        description=" ".join(raw["description"].split()),
        categories=categories,
        aliases=list(raw.get("aliases", [])),
        terms_en=terms_en,
        terms_zh=terms_zh,
        term_weights={**weights_zh, **weights_en},
        area=area,
        group=group,
    )


@cache
def load_catalogue() -> Catalogue:
    """Parse topics.toml once per process; a malformed entry is a ValueError naming it."""
    data = _read_catalogue_file()
    areas: list[Area] = []
    topics: dict[str, Topic] = {}
    index: dict[str, str] = {}
    for raw_area in data["areas"]:
        groups: list[Group] = []
        for raw_group in raw_area["groups"]:
            cats = list(raw_group["categories"])
            members = tuple(
                _build_topic(t, raw_area["name_zh"], raw_group["name_zh"], cats)
                for t in raw_group["topics"]
            )
            groups.append(Group(raw_group["name_zh"], raw_group["name_en"],
                                raw_group["description"], tuple(cats), members))
            for topic in members:
                if topic.slug in topics:
                    raise ValueError(f"topics.toml: duplicate slug {topic.slug!r}")
                topics[topic.slug] = topic
        areas.append(Area(raw_area["name_zh"], raw_area["name_en"], tuple(groups)))
    for topic in topics.values():
        for name in (topic.slug, topic.name_zh, topic.name_en, *topic.aliases):
            for key in _keys(name):
                other = index.setdefault(key, topic.slug)
                if other != topic.slug:
                    raise ValueError(
                        f"topics.toml: {name!r} names both {other!r} and {topic.slug!r}"
                    )
    return Catalogue(tuple(areas), topics, index)


# -- lookup -----------------------------------------------------------------------------------


def lookup(name: str, store: Store | None = None) -> Topic | None:
    """The topic called `name` (slug, Chinese or English name, alias), or a stored custom one."""
    catalogue = load_catalogue()
    for key in _keys(name):
        if key in catalogue.index:
            return catalogue.topics[catalogue.index[key]]
    if store is None or not name.strip():
        return None
    rows = list(store.db.query(
        "select slug, text from custom_topics where slug = ? or text_key = ?",
        [name.strip().lower(), normalize(name)],
    ))
    return _custom_from_row(rows[0]) if rows else None


def get_topic(slug: str, store: Store | None = None) -> Topic:
    """A catalogue or custom topic by its exact slug; KeyError when there is none."""
    catalogue = load_catalogue()
    if slug in catalogue.topics:
        return catalogue.topics[slug]
    if store is not None:
        try:
            return _custom_from_row(store.db["custom_topics"].get(slug))
        except sqlite_utils.db.NotFoundError:
            pass
    raise KeyError(slug)


def is_cjk(text: str) -> bool:
    """Whether `text` has a Chinese character: one test for term matching, custom topics and
    the translation check, so they agree on what counts as Chinese."""
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def _similarity(query: str, key: str) -> float:
    """0–1: how close a query is to a name (both casefolded, spaces kept); fuzzy, CJK-aware."""
    q, k = normalize(query), normalize(key)
    if is_cjk(q) or is_cjk(k):
        if min(len(q), len(k)) >= 2 and (q in k or k in q):
            return 0.6 + 0.35 * min(len(q), len(k)) / max(len(q), len(k))
        # Chinese names share characters rather than spelling: 训练后 ≈ 后训练.
        cq, ck = set(q), set(k)
        return 2 * len(cq & ck) / (len(cq) + len(ck))
    if len(k) < 4:
        # Spelling similarity to "RL" or "WER" is chance; only the acronym itself counts.
        return 1.0 if q == k else 0.0
    # Whole words in common (speculative decoding tricks ~ speculative decoding), or spelling.
    wq, wk = set(query.casefold().split()), set(key.casefold().split())
    words = 2 * len(wq & wk) / (len(wq) + len(wk)) if wq and wk else 0.0
    return max(words, difflib.SequenceMatcher(None, q, k).ratio())


def suggest(name: str, n: int = 5) -> list[Topic]:
    """Closest catalogue topics to an unknown name, best first (names count more than terms)."""
    query = " ".join(unicodedata.normalize("NFKC", name).split())
    best: dict[str, float] = {}
    for topic in load_catalogue().topics.values():
        names = (topic.slug, topic.name_zh, topic.name_en, *topic.aliases)
        score = max(_similarity(query, x) for x in names)
        terms = (*topic.terms_en, *topic.terms_zh)
        score = max(score, 0.9 * max((_similarity(query, x) for x in terms), default=0))
        if score >= 0.5:
            best[topic.slug] = score
    ranked = sorted(best, key=lambda slug: -best[slug])
    return [load_catalogue().topics[slug] for slug in ranked[:n]]


# -- custom topics ----------------------------------------------------------------------------

_EN_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9+]*(?:-[A-Za-z0-9+]+)*")
_CJK_RUN_RE = re.compile(r"[\u3400-\u9fff]+")
_STOPWORDS = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "based", "be", "by", "for", "from", "in", "into", "is",
        "of", "on", "or", "over", "the", "to", "towards", "toward", "under", "using", "via", "vs",
        "with", "without", "about"
    ]
)


CUSTOM_PREFIX = "custom-"
# A chat's "create custom topic" button parks its text under a short key (a button carries
# 64 bytes); a text nobody clicked within PARKED_DAYS is dropped, and so is a custom topic
# that nobody subscribes to and nothing was scored for (a signup never confirmed).
_PARKED = "pending_custom:"
PARKED_DAYS = 7


def park_custom_text(store: Store, text: str) -> str:
    """Park `text` for a button; returns its key (the same text, the same key)."""
    text = " ".join(text.split())
    key = hashlib.sha1(normalize(text).encode()).hexdigest()[:12]
    with store.db.atomic():
        prune_custom(store)
        store.set_meta(_PARKED + key, json.dumps({"text": text, "at": now_iso()}))
    return key


def parked_custom_text(store: Store, key: str) -> str | None:
    value = store.get_meta(_PARKED + key)
    try:
        parked = json.loads(value) if value is not None else None
    except ValueError:
        return value  # parked before texts carried their time: plain text
    return parked["text"] if isinstance(parked, dict) else value


def prune_custom(store: Store) -> None:
    """Forget abandoned custom-topic texts: parked ones past PARKED_DAYS, custom topics a day
    old with no subscription and no score."""
    now = datetime.now(UTC)
    store.prune_meta(_PARKED, (now - timedelta(days=PARKED_DAYS)).isoformat(timespec="seconds"))
    # Reads subscriptions and scores in the same statement: one delete, no id list in Python.
    store.db.execute(
        "delete from custom_topics where created_at < ? and slug not in"
        " (select topic from subscriptions) and slug not in (select topic from scores)",
        [(now - timedelta(days=1)).isoformat(timespec="seconds")])


def custom_topic(store: Store, text: str) -> Topic:
    """Store `text` as a custom topic (once per normalized text) and return it."""
    text = " ".join(text.split())
    if not text:
        raise UsageError(zh="主题不能为空", en="a topic cannot be empty")
    if len(text) > CUSTOM_MAX_CHARS:
        raise UsageError(
            f"主题最多 {CUSTOM_MAX_CHARS} 个字符(现为 {len(text)})/ "
            f"a topic is at most {CUSTOM_MAX_CHARS} characters (got {len(text)})"
        )
    key = normalize(text)
    # The slug comes from the key, so the same words get the same slug in every database.
    slug = CUSTOM_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:10]
    prune_custom(store)  # new texts are what makes the table grow: tidy it as they come
    store.db["custom_topics"].insert(
        {"slug": slug, "text": text, "text_key": key, "created_at": now_iso()}, ignore=True
    )
    row = next(iter(store.db.query(
        "select slug, text from custom_topics where text_key = ?", [key])))
    return _custom_from_row(row)


def custom_topics(store: Store) -> list[Topic]:
    rows = store.db.query("select slug, text from custom_topics order by created_at, slug")
    return [_custom_from_row(row) for row in rows]


def _custom_from_row(row: dict[str, Any]) -> Topic:
    terms_en, terms_zh, weights = custom_terms(row["text"])
    return Topic(
        slug=row["slug"], name_zh=row["text"], name_en=row["text"], description=row["text"],
        terms_en=terms_en, terms_zh=terms_zh, term_weights=weights, area=CUSTOM_AREA,
        custom=True,
    )


def custom_terms(text: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Offline-scorer terms of free text: its words, word pairs and Chinese bigrams.

    Abstracts are English, so Chinese text alone would match nothing: catalogue topics whose
    Chinese name, alias or core term occurs in the text lend their English terms, one tier
    weaker than in their own topic (扩散模型视频编辑 → diffusion model, video editing…).
    """
    text = unicodedata.normalize("NFKC", text)
    weights: dict[str, int] = {}

    def add(term: str, weight: int) -> None:
        weights[term] = max(weight, weights.get(term, 0))

    for chunk in re.split(r"[,;:/()\[\]，；：、。]|\b(?:" + "|".join(_STOPWORDS) + r")\b",
                          text, flags=re.IGNORECASE):
        words = [w for w in _EN_WORD_RE.findall(chunk or "") if w.lower() not in _STOPWORDS]
        for word in words:
            add(word, 2)
        for left, right in zip(words, words[1:], strict=False):
            add(f"{left} {right}", 3)
    for run in _CJK_RUN_RE.findall(text):
        if len(run) <= 6:
            add(run, 3)
        for i in range(len(run) - 1):
            add(run[i : i + 2], 1)
    if is_cjk(text):
        for topic, en_weights in _borrowed(text):
            log.debug("custom topic %r borrows terms of %s", text, topic)
            for term, weight in en_weights.items():
                add(term, weight)
    terms_en = [t for t in weights if not is_cjk(t)]
    terms_zh = [t for t in weights if is_cjk(t)]
    return terms_en, terms_zh, weights


def _borrowed(text: str) -> Iterator[tuple[str, dict[str, int]]]:
    key = normalize(text)
    for topic in load_catalogue().topics.values():
        zh_names = [topic.name_zh, *topic.aliases,
                    *(t for t in topic.terms_zh if topic.term_weights.get(t) == 3)]
        if any(is_cjk(n) and len(normalize(n)) >= 2 and normalize(n) in key for n in zh_names):
            yield topic.slug, {
                t: topic.term_weights[t] - 1
                for t in topic.terms_en
                if topic.term_weights.get(t, 0) >= 2
            }


# -- active topics ----------------------------------------------------------------------------


def active_topics(store: Store, extra: Sequence[str] = ()) -> list[Topic]:
    """Topics someone is subscribed to (active or paused subscriber), then `extra` names.

    Paused subscribers keep their topics scored so that resuming shows today's papers at once.
    A subscription whose topic vanished from the catalogue is skipped with a warning; an
    unknown `extra` name is a usage error with suggestions.
    """
    rows = store.db.query(
        "select distinct s.topic from subscriptions s join subscribers b"
        " on b.id = s.subscriber_id where b.status in ('active', 'paused') order by s.topic"
    )
    out: dict[str, Topic] = {}
    for row in rows:
        try:
            topic = get_topic(row["topic"], store)
        except KeyError:
            log.warning("subscriptions name unknown topic %r; skipped", row["topic"])
            continue
        out[topic.slug] = topic
    for name in extra:
        topic = lookup(name, store)
        if topic is None:
            raise UsageError(unknown_topic_message(name))
        out.setdefault(topic.slug, topic)
    return list(out.values())


def unknown_topic_message(name: str) -> str:
    """`未知主题 / unknown topic 'x'` plus the closest names, for every channel to reuse."""
    hints = ", ".join(f"{t.name_zh} ({t.slug})" for t in suggest(name))
    message = f"未知主题 / unknown topic {name!r}"
    if hints:
        message += f";你是不是想找 / did you mean: {hints}"
    return message + "(`digestbot topics` 列出全部 / lists all)"

