"""Plain data passed between stages (sources → enrich → digest → render → channels).

Dataclasses rather than dicts so each stage can be read alone and type-checked. The store
converts them to and from rows; nothing here touches I/O.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal, get_args

# Each closed set of values is one Literal type, used in the dataclasses and signatures below
# and by the stages; the tuple beside it is the same values, in order, for runtime checks,
# messages and counts (derived, so the two cannot drift apart).
AnnounceType = Literal["new", "cross", "replace", "replace-cross"]
ANNOUNCE_TYPES: tuple[AnnounceType, ...] = get_args(AnnounceType)
Channel = Literal["email", "telegram", "slack"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
Lang = Literal["zh", "en", "both"]
LANGS: tuple[Lang, ...] = get_args(Lang)
# How often a reader gets a digest: each announcement day, or on Mondays the week's best.
Cadence = Literal["daily", "weekly"]
CADENCES: tuple[Cadence, ...] = get_args(Cadence)
SubscriberStatus = Literal["pending", "active", "paused", "unsubscribed", "bounced", "blocked"]
SUBSCRIBER_STATUSES: tuple[SubscriberStatus, ...] = get_args(SubscriberStatus)
# A delivery (outbox row) from planned to done; `failed` is retried, the others are final.
DeliveryStatus = Literal["pending", "sending", "sent", "failed", "failed_permanent", "cancelled"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = get_args(DeliveryStatus)

# The labels arXivDaily readers know; replace-cross is shown as an update too.
ANNOUNCE_LABELS_ZH: dict[AnnounceType, str] = {
    "new": "新提交",
    "cross": "交叉列表",
    "replace": "版本更新",
    "replace-cross": "版本更新",
}
ANNOUNCE_LABELS_EN: dict[AnnounceType, str] = {
    "new": "New",
    "cross": "Cross-list",
    "replace": "Updated",
    "replace-cross": "Updated",
}


@dataclass(frozen=True)
class Author:
    """One author, Unicode name; affiliations as the feed or API stated them (never guessed)."""

    name: str
    affiliations: tuple[str, ...] = ()


@dataclass
class Paper:
    """One arXiv paper at its latest known version. `id` carries no version suffix.

    `version` is None when the source did not say (a listing replacement without its HTML
    link) until RSS or the API does: a guessed version would name the wrong PDF.
    """

    id: str
    version: int | None
    title: str
    abstract: str
    authors: list[Author] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    primary_category: str | None = None
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    license: str | None = None
    published: str | None = None
    updated: str | None = None

    @property
    def abs_url(self) -> str:
        return f"https://arxiv.org/abs/{self.id}"

    @property
    def versioned_id(self) -> str:
        """'2608.11232v2', or the bare id while the version is unknown."""
        return f"{self.id}v{self.version}" if self.version else self.id

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.versioned_id}"


@dataclass(frozen=True)
class Announcement:
    """That `arxiv_id` (at `version`) appeared in the announcement of `date` as `announce_type`."""

    date: str
    arxiv_id: str
    announce_type: AnnounceType
    version: int | None
    source: str


@dataclass
class FeedBatch:
    """What one source (listing page, RSS, API answer, saved file) yielded."""

    source: str
    date: str | None
    papers: list[Paper] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    # Set when a source answered but had nothing to announce (weekend, holiday).
    empty: bool = False
    # Set when a feed holds arXiv's cap of items and so may have been cut.
    truncated: bool = False


@dataclass
class Topic:
    slug: str
    name_zh: str
    name_en: str
    description: str
    categories: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    terms_en: list[str] = field(default_factory=list)
    terms_zh: list[str] = field(default_factory=list)
    # Offline-scorer weight per term (3 decisive, 2 strong, 1 supporting, negative for
    # counter-evidence such as "training-free"); terms and aliases without one weigh 2.
    term_weights: dict[str, int] = field(default_factory=dict)
    area: str = ""
    group: str = ""
    custom: bool = False

    def display(self, lang: Lang = "zh") -> str:
        if lang == "en":
            return self.name_en
        return self.name_zh


@dataclass(frozen=True)
class Score:
    arxiv_id: str
    version: int
    topic: str
    score: int
    reason: str
    scorer: str


@dataclass(frozen=True)
class Institution:
    name: str
    name_zh: str = ""


@dataclass
class Enrichment:
    arxiv_id: str
    version: int
    title_zh: str = ""
    summary_zh: str = ""
    abstract_zh: str = ""
    institutions: list[Institution] = field(default_factory=list)
    model: str = "offline"
    prompt_version: str = ""
    # English one-liner: the offline summary (first sentence) or the model's.
    summary_en: str = ""


@dataclass
class Subscriber:
    id: int
    channel: Channel
    address: str
    lang: Lang = "zh"
    tz: str = "Asia/Shanghai"
    send_at: str = "08:30"
    max_papers: int = 50
    status: SubscriberStatus = "active"
    token: str = ""
    created_at: str = ""
    updated_at: str = ""
    status_reason: str | None = None
    webhook_url: str | None = None
    # Signed links (confirm, preferences) carry it; it goes up when the reader unsubscribes
    # or is removed, so every link handed out before dies (`signing`, `subscribers`).
    link_gen: int = 0
    cadence: Cadence = "daily"


@dataclass(frozen=True)
class Subscription:
    subscriber_id: int
    topic: str
    threshold: int = 60


@dataclass(frozen=True)
class TopicHit:
    topic: str
    topic_name: str
    score: int
    reason: str


@dataclass(frozen=True)
class AuthorHit:
    """A followed author found on a paper: the name the reader follows, and the spelling the
    paper uses (shown, so a reader can drop a false match)."""

    followed: str
    spelling: str


@dataclass
class DigestEntry:
    paper: Paper
    announcement: Announcement
    hits: list[TopicHit]
    enrichment: Enrichment | None = None
    # Followed authors on the paper: it comes whatever its topic scores.
    authors: list[AuthorHit] = field(default_factory=list)
    # Set by `digest.Library`, which shares one entry among the readers it comes to alike:
    # (a name for the paper, announcement and enrichment as read, a name for this entry; the
    # same content has the same names in every batch). Renderers cache by it without hashing
    # text; None: they key by content.
    key: tuple[Hashable, Hashable] | None = None

    @property
    def best_score(self) -> int:
        return max((h.score for h in self.hits), default=0)


@dataclass
class Digest:
    subscriber: Subscriber
    date: str
    topics: list[Topic]
    entries: list[DigestEntry]
    # Papers that passed the thresholds but were cut by the subscriber's max ("另有 K 篇").
    more: int = 0
    # topic slug → the subscriber's threshold, for the footer's "why you get this".
    thresholds: dict[str, int] = field(default_factory=dict)
    # Why this digest comes late ("fetch": arXiv could not be fetched at the usual time); the
    # renderers turn it into one line under the header. "" when it is on time.
    late: str = ""
    # Set by `digest.select` for entries every reader of the same subscriptions gets alike: a
    # name for the entries in their order (as `DigestEntry.key` names one entry), under which
    # renderers cache what they make of the entries as a whole. None: they key by content.
    key: Hashable | None = None

    @property
    def total(self) -> int:
        return len(self.entries) + self.more


@dataclass(frozen=True)
class BreakerState:
    """A sender's circuit breaker as the status page shows it: `name` is the kind of server
    ("SMTP"), never its address; `since` (UTC, ISO) is when it last opened."""

    name: str
    state: str  # "closed" | "open" | "half-open"
    failures: int
    since: str | None
