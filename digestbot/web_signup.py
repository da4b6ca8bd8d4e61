"""Self-service for email readers: signup with double opt-in, and the preferences page.

    GET  /             today's overview and the signup form
    POST /subscribe    a *pending* subscriber + a confirmation email with a signed link
    GET  /confirm      a page with a button (mail scanners fetch links; GET changes nothing)
    POST /confirm      pending → active
    GET  /preferences  topics, thresholds, time, zone, language; pause, resume, unsubscribe
    POST /preferences  one of those actions, then back to the page (POST → redirect → GET)

Links carry HMAC-signed, expiring tokens (`digestbot.signing`); every form carries a CSRF
field tied to a cookie. Signing up an address that is already subscribed changes nothing on
the web and shows the very same page: the owner gets an email with their preferences link
instead, so nobody learns from the page whether an address is known, and a stranger cannot
change someone else's topics. Signups are rate limited per client IP and per address.

Without DIGESTBOT_SECRET (or DIGESTBOT_PUBLIC_URL, needed to put a link in an email) these
pages say so with a 503 instead of signing with something guessable.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web as aioweb
from multidict import MultiDictProxy

from digestbot import render, signing, subscribers, topics, web, web_pages
from digestbot.errors import UsageError
from digestbot.models import Subscriber, Topic
from digestbot.store import Store

log = logging.getLogger(__name__)

# Per client IP and per address, in a sliding window: enough for typos and a resend, not
# for mailbombing someone with confirmation emails.
IP_LIMIT = (10, 3600.0)
ADDRESS_LIMIT = (3, 3600.0)

# The longest value each form field may carry; anything longer is refused before parsing.
FIELD_LIMITS: dict[str, int] = {
    "email": 254,  # RFC 5321 path limit
    "custom": topics.CUSTOM_MAX_CHARS,
    "custom_threshold": 4,
    "threshold": 4,
    "tz": 64,
    "send_at": 5,
    "lang": 8,
    "max_papers": 4,
    "topic": 64,
    "action": 16,
    "csrf": 64,
    "token": signing.MAX_TOKEN_LENGTH,
}
THRESHOLD_FIELD = "thr."  # preferences: one threshold input per topic, "thr.<slug>"
MAX_TOPICS = 64

CSRF_COOKIE = "digestbot_csrf"
_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")

# Status → what `resume` may lead back from. Blocked (a Telegram user blocked the bot) and
# pending (not yet confirmed) are not the preferences page's to undo.
_RESUMABLE = ("paused", "unsubscribed", "bounced")

routes = aioweb.RouteTableDef()


class RateLimiter:
    """At most `limit` events per `window` seconds per key, in memory (one process serves)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.events: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Record an attempt; False when the key already used up its window."""
        if len(self.events) > 10_000:
            self._forget(now)
        seen = self.events.setdefault(key, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True

    def _forget(self, now: float) -> None:
        # Keys whose events all left the window carry no information any more.
        self.events = {k: v for k, v in self.events.items() if v and v[-1] > now - self.window}


def _client_ip(request: aioweb.Request) -> str:
    """The address a signup is counted against.

    Deployed as documented (a TLS proxy on the host, the app on 127.0.0.1 or behind Docker's
    loopback port), every request arrives from the proxy, so the peer alone would make the
    per-IP limit one limit for the whole site. When the peer is a loopback or private
    address, the last X-Forwarded-For entry (the one the nearest proxy appended, which a
    client cannot choose) names the reader instead; a public peer is taken as it is.
    """
    peer = request.remote or "-"
    forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
    try:
        trusted = ipaddress.ip_address(peer).is_private
        ipaddress.ip_address(forwarded)
    except ValueError:
        return peer
    return forwarded if trusted else peer


@dataclass
class SignupState:
    """The clock tokens and limits read (tests replace `now`) and the limiters themselves."""

    now: Callable[[], float] = time.time
    per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(*IP_LIMIT))
    per_address: RateLimiter = field(default_factory=lambda: RateLimiter(*ADDRESS_LIMIT))


STATE = aioweb.AppKey("signup_state", SignupState)


def setup(app: aioweb.Application) -> None:
    app[STATE] = SignupState()
    app.add_routes(routes)


class FormError(Exception):
    """A form that cannot be taken as sent: shown to the user, nothing is changed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- pages, forms and CSRF --------------------------------------------------------------------


def _form_page(request: aioweb.Request, template: str, status: int = 200, **context: Any
               ) -> aioweb.Response:
    """A page with forms: each carries the CSRF field matching this browser's cookie."""
    secret = signing.secret_of(request.app[web.SETTINGS])
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = not _COOKIE_RE.fullmatch(cookie)
    if fresh:
        cookie = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(16)
    response = web.page(template, status=status, csrf=signing.csrf_token(secret, cookie),
                        nonce=nonce, **context)
    # The only script is the nonce'd time zone guess on the signup form.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    if fresh:
        public = request.app[web.SETTINGS].public_url or ""
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="Lax", path="/",
                            secure=public.startswith("https://"))
    return response


def notice(title_zh: str, title_en: str, text_zh: str = "", text_en: str = "", *,
           status: int = 200, link: str | None = None, link_text: str = "") -> aioweb.Response:
    """A one-message page (check your inbox, link expired, too many attempts…)."""
    return web.page("notice.html", status=status, title_zh=title_zh, title_en=title_en,
                    text_zh=text_zh, text_en=text_en, link=link, link_text=link_text)


def _unavailable(what: str) -> aioweb.Response:
    return notice(
        "注册与订阅管理暂不可用", "Signup and preferences are unavailable",
        f"运营者尚未设置 {what}。", f"The operator has not set {what} (`digestbot init` writes a "
        "secret; DIGESTBOT_PUBLIC_URL is this site's address).", status=503)


def _missing_config(request: aioweb.Request, *, need_public_url: bool) -> aioweb.Response | None:
    settings = request.app[web.SETTINGS]
    if not settings.secret:
        return _unavailable("DIGESTBOT_SECRET")
    if need_public_url and not settings.public_url:
        return _unavailable("DIGESTBOT_PUBLIC_URL")
    return None


async def _read_form(request: aioweb.Request) -> MultiDictProxy[str]:
    """The POSTed fields, every one a string within its size cap."""
    form = await request.post()
    counts: dict[str, int] = {}
    for name, value in form.items():
        if not isinstance(value, str):
            raise FormError("不接受文件上传 / file uploads are not accepted")
        cap = FIELD_LIMITS.get(name, 4 if name.startswith(THRESHOLD_FIELD) else 0)
        if not cap or len(name) > 80:
            raise FormError(f"未知字段 / unknown form field {name[:40]!r}")
        if len(value) > cap:
            raise FormError(f"字段过长 / field {name!r} is longer than {cap} characters")
        counts[name] = counts.get(name, 0) + 1
    if counts.get("topic", 0) > MAX_TOPICS or len(form) > 3 * MAX_TOPICS:
        raise FormError("字段过多 / too many fields")
    return form  # type: ignore[return-value]


def _csrf_ok(request: aioweb.Request, form: Mapping[str, str]) -> bool:
    secret = signing.secret_of(request.app[web.SETTINGS])
    return signing.check_csrf(secret, request.cookies.get(CSRF_COOKIE), form.get("csrf"))


def _csrf_rejected() -> aioweb.Response:
    return notice("表单已过期", "This form has expired",
                  "请重新打开页面后再提交（需要允许 Cookie）。",
                  "Reload the page and submit again (cookies must be allowed).", status=403)


# -- GET / : overview and signup form ---------------------------------------------------------


def _form_defaults() -> dict[str, Any]:
    return {"email": "", "topics": [], "custom": "", "threshold": subscribers.DEFAULT_THRESHOLD,
            "send_at": subscribers.DEFAULT_SEND_AT, "tz": subscribers.DEFAULT_TZ,
            "lang": subscribers.DEFAULT_LANG}


def _home(request: aioweb.Request, *, status: int = 200, error: str | None = None,
          values: dict[str, Any] | None = None) -> aioweb.Response:
    store = request.app[web.STORE]
    day = store.latest_announcement_date()
    context = {
        "day": day, "tree": web_pages.overview(store, day) if day else [],
        "min_score": subscribers.DEFAULT_THRESHOLD, "catalogue": topics.load_catalogue(),
        "form": {**_form_defaults(), **(values or {})}, "error": error,
    }
    unavailable = _missing_config(request, need_public_url=True)
    if unavailable is not None:
        # The overview still works; only the form needs signing and a public address.
        return web.page("signup.html", status=status, signup_off=True, csrf="", nonce="",
                        **context)
    return _form_page(request, "signup.html", status=status, signup_off=False, **context)


@routes.get("/")
async def home(request: aioweb.Request) -> aioweb.Response:
    return _home(request)


# -- POST /subscribe --------------------------------------------------------------------------


@dataclass
class Signup:
    email: str
    topics: list[Topic]
    custom: str
    threshold: int
    send_at: str
    tz: str
    lang: str


def _parse_signup(form: Mapping[str, Any], topic_slugs: list[str]) -> Signup:
    """Validate every field before anything is written; UsageError says which and why."""
    email = subscribers.validate_email(form.get("email", ""))
    catalogue = topics.load_catalogue()
    chosen = []
    for slug in dict.fromkeys(topic_slugs):
        if slug not in catalogue.topics:
            raise UsageError(f"未知主题 / unknown topic {slug!r}")
        chosen.append(catalogue.topics[slug])
    custom = " ".join(str(form.get("custom", "")).split())
    if not chosen and not custom:
        raise UsageError("请至少选择一个主题 / choose at least one topic")
    return Signup(
        email=email, topics=chosen, custom=custom,
        threshold=subscribers.validate_threshold(
            form.get("threshold") or str(subscribers.DEFAULT_THRESHOLD)),
        send_at=subscribers.validate_time(form.get("send_at") or subscribers.DEFAULT_SEND_AT),
        tz=subscribers.validate_tz(form.get("tz") or subscribers.DEFAULT_TZ),
        lang=subscribers.validate_lang(form.get("lang") or subscribers.DEFAULT_LANG),
    )


def _apply_signup(store: Store, signup: Signup) -> tuple[Subscriber, bool]:
    """(subscriber, already): a new or unconfirmed signup is (re)written as pending;
    a confirmed subscriber is left exactly as they are (`already` = True)."""
    existing = subscribers.by_address(store, "email", signup.email)
    if existing is not None and existing.status in ("active", "paused", "blocked"):
        return existing, True
    with store.db.atomic():
        slugs = [t.slug for t in signup.topics]
        if signup.custom:
            slugs.append(topics.custom_topic(store, signup.custom).slug)
        if existing is not None:
            # The latest form wins for someone not (or no longer) confirmed.
            subscribers.remove_subscription(store, existing.id, None)
        sub = subscribers.add_or_update(
            store, channel="email", address=signup.email, topics=list(dict.fromkeys(slugs)),
            threshold=signup.threshold, tz=signup.tz, send_at=signup.send_at, lang=signup.lang,
            status="pending",
        )
    return sub, False


@routes.post("/subscribe")
async def subscribe(request: aioweb.Request) -> aioweb.Response:
    unavailable = _missing_config(request, need_public_url=True)
    if unavailable is not None:
        return unavailable
    state = request.app[STATE]
    try:
        form = await _read_form(request)
    except FormError as exc:
        return _home(request, status=exc.status, error=str(exc))
    if not _csrf_ok(request, form):
        return _csrf_rejected()
    now = state.now()
    if not state.per_ip.allow(_client_ip(request), now):
        return _too_many()
    values = {"email": form.get("email", ""), "topics": form.getall("topic", []),
              "custom": form.get("custom", ""), "threshold": form.get("threshold", ""),
              "send_at": form.get("send_at", ""), "tz": form.get("tz", ""),
              "lang": form.get("lang", "")}
    try:
        signup = _parse_signup(form, form.getall("topic", []))
    except UsageError as exc:
        return _home(request, status=400, error=str(exc), values=values)
    if not state.per_address.allow(signup.email, now):
        return _too_many()
    store = request.app[web.STORE]
    sub, already = _apply_signup(store, signup)
    try:
        await send_confirmation(request.app[web.SETTINGS], sub, already=already, now=now)
    except Exception as exc:  # noqa: BLE001 - the reader gets a page either way
        log.warning("confirmation email for subscriber #%s not sent: %s", sub.id, exc)
        return notice("暂时无法发送确认邮件", "Could not send the confirmation email",
                      "请稍后再试。", "Please try again later.", status=503)
    log.info("signup: subscriber #%s %s", sub.id, "already confirmed" if already else "pending")
    # The same words whether the address was new, pending or long subscribed.
    return notice("请查收邮件", "Check your inbox",
                  f"我们已向 {signup.email} 发送一封邮件，点击其中的链接即可完成订阅。",
                  f"We sent an email to {signup.email}; follow its link to finish.")


def _too_many() -> aioweb.Response:
    return notice("尝试次数过多", "Too many attempts", "请一小时后再试。",
                  "Please try again in an hour.", status=429)


async def send_confirmation(settings: Any, sub: Subscriber, *, already: bool,
                            now: float | None = None) -> None:
    """The double opt-in email, or — for a confirmed address — its preferences link."""
    # Imported here: the email channel imports the delivery core, which imports this web app.
    from digestbot.channels import email as email_channel

    if already:
        link = signing.preferences_url(settings, sub, now=now)
        subject = "你的 arXiv 每日学术速递订阅 / Your arXiv daily digest subscription"
    else:
        link = signing.confirm_url(settings, sub, now=now)
        subject = "请确认订阅 arXiv 每日学术速递 / Confirm your arXiv daily digest subscription"
    context = {"lang": "both", "link": link, "already": already, "subject": subject,
               "hours": signing.CONFIRM_TTL // 3600}
    env = render.environment()
    text = env.get_template("email/confirm.txt").render(context)
    html = env.get_template("email/confirm.html").render(context)
    await email_channel.send_notice(settings, to=sub.address, subject=subject, text=text,
                                    html=html)


# -- /confirm ---------------------------------------------------------------------------------


def _token_subscriber(request: aioweb.Request, purpose: str, token: str
                      ) -> tuple[Subscriber | None, aioweb.Response | None]:
    """(subscriber, None) for a genuine token, else (None, the page that explains: also when
    the site has no secret to check it with)."""
    unavailable = _missing_config(request, need_public_url=False)
    if unavailable is not None:
        return None, unavailable
    secret = signing.secret_of(request.app[web.SETTINGS])
    try:
        payload = signing.verify(secret, purpose, token, now=request.app[STATE].now())
    except signing.TokenExpired:
        return None, _expired(purpose)
    except signing.TokenError:
        return None, _invalid()
    sub = subscribers.get(request.app[web.STORE], int(payload)) if payload.isdigit() else None
    return (sub, None) if sub is not None else (None, _invalid())


def _invalid() -> aioweb.Response:
    return notice("链接无效", "This link is not valid",
                  "请使用邮件中的完整链接，或重新订阅。",
                  "Use the full link from your email, or sign up again.", status=404,
                  link="/", link_text="首页 / Home")


def _expired(purpose: str) -> aioweb.Response:
    if purpose == signing.CONFIRM:
        zh, en = "确认链接已过期，请重新订阅。", "The confirmation link has expired; please sign up again."
    else:
        zh, en = "此链接已过期，请使用最近一封摘要邮件中的链接。", \
            "This link has expired; use the one in your latest digest."
    return notice("链接已过期", "This link has expired", zh, en, status=410,
                  link="/", link_text="首页 / Home")


@routes.get("/confirm")
async def confirm_form(request: aioweb.Request) -> aioweb.Response:
    token = request.query.get("token", "")
    sub, problem = _token_subscriber(request, signing.CONFIRM, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if sub.status != "pending":
        return _after_confirm(request, sub)
    return _form_page(request, "confirm.html", token=token, address=web._shown_address(sub))


async def _signed_form(request: aioweb.Request, purpose: str
                       ) -> tuple[MultiDictProxy[str], Subscriber, str] | aioweb.Response:
    """(form, subscriber, token) of a POST that acts on a signed link, or the page saying why
    not: every field is within its cap, the token is genuine and unexpired for `purpose` (on
    a site with a secret), and the CSRF field matches the cookie."""
    try:
        form = await _read_form(request)
    except FormError as exc:
        return notice("无法处理", "Cannot process this form", "", str(exc), status=exc.status)
    token = form.get("token", "")
    sub, problem = _token_subscriber(request, purpose, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if not _csrf_ok(request, form):
        return _csrf_rejected()
    return form, sub, token


@routes.post("/confirm")
async def confirm(request: aioweb.Request) -> aioweb.Response:
    checked = await _signed_form(request, signing.CONFIRM)
    if isinstance(checked, aioweb.Response):
        return checked
    _, sub, _ = checked
    if sub.status == "pending":
        subscribers.set_status(request.app[web.STORE], sub.id, "active", reason="confirmed by email")
        log.info("subscriber #%s confirmed", sub.id)
        sub = subscribers.get(request.app[web.STORE], sub.id) or sub
    return _after_confirm(request, sub)


def _after_confirm(request: aioweb.Request, sub: Subscriber) -> aioweb.Response:
    if sub.status not in ("active", "paused"):
        # Unsubscribed or bounced since: an old confirm link must not bring them back.
        return _invalid()
    return notice("订阅成功", "You are subscribed",
                  f"{web._shown_address(sub)} 将在每天 {sub.send_at}（{sub.tz}）收到摘要。",
                  f"{web._shown_address(sub)} will get the digest daily at {sub.send_at} ({sub.tz}).",
                  link=_preferences_path(request, sub), link_text="管理订阅 / Manage subscription")


def _preferences_path(request: aioweb.Request, sub: Subscriber, done: str | None = None) -> str:
    """A same-site link to the preferences page with a fresh token."""
    secret = signing.secret_of(request.app[web.SETTINGS])
    token = signing.sign(secret, signing.PREFERENCES, str(sub.id), signing.PREFERENCES_TTL,
                         now=request.app[STATE].now())
    query = {"token": token, **({"done": done} if done else {})}
    return f"/preferences?{urlencode(query)}"


# -- /preferences -----------------------------------------------------------------------------

_DONE = {
    "save": ("已保存。", "Saved."),
    "pause": ("已暂停：恢复之前不会收到摘要。", "Paused: no digests until you resume."),
    "resume": ("已恢复订阅。", "Resumed."),
    "unsubscribe": ("已退订：不会再收到摘要。", "Unsubscribed: no more digests."),
}


def _preferences_page(request: aioweb.Request, sub: Subscriber, token: str, *,
                      status: int = 200, error: str | None = None, done: str | None = None
                      ) -> aioweb.Response:
    store = request.app[web.STORE]
    subs = subscribers.subscriptions(store, sub.id)
    catalogue = topics.load_catalogue()
    custom = []
    for s in subs:
        if s.topic not in catalogue.topics:
            try:
                custom.append(topics.get_topic(s.topic, store))
            except KeyError:
                continue  # a topic that no longer exists; saving the form drops it
    return _form_page(
        request, "preferences.html", status=status, token=token, sub=sub,
        address=web._shown_address(sub), catalogue=catalogue, custom_topics=custom,
        thresholds={s.topic: s.threshold for s in subs}, error=error,
        done=_DONE.get(done or ""), resumable=sub.status in _RESUMABLE,
        default_threshold=subscribers.DEFAULT_THRESHOLD,
    )


@routes.get("/preferences")
async def preferences(request: aioweb.Request) -> aioweb.Response:
    token = request.query.get("token", "")
    sub, problem = _token_subscriber(request, signing.PREFERENCES, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    return _preferences_page(request, sub, token, done=request.query.get("done"))


@routes.post("/preferences")
async def change_preferences(request: aioweb.Request) -> aioweb.Response:
    checked = await _signed_form(request, signing.PREFERENCES)
    if isinstance(checked, aioweb.Response):
        return checked
    form, sub, token = checked
    store = request.app[web.STORE]
    action = form.get("action", "")
    # status change: (allowed from, new status); a button pressed twice changes nothing.
    moves = {"pause": (("active",), "paused"), "resume": (_RESUMABLE, "active"),
             "unsubscribe": (("active", "paused", "bounced", "pending"), "unsubscribed")}
    query = {"token": token}
    try:
        if action == "save":
            _save(store, sub, form)
            query["done"] = action
        elif action in moves:
            allowed, status = moves[action]
            if sub.status in allowed:
                subscribers.set_status(store, sub.id, status, reason="preferences page")
                query["done"] = action
        else:
            raise UsageError(f"未知操作 / unknown action {action[:16]!r}")
    except UsageError as exc:
        return _preferences_page(request, sub, token, status=400, error=str(exc))
    log.info("subscriber #%s preferences: %s", sub.id, action)
    # POST → redirect → GET, so a reload does not submit again.
    raise aioweb.HTTPSeeOther(f"/preferences?{urlencode(query)}")


def _save(store: Store, sub: Subscriber, form: MultiDictProxy[str]) -> None:
    """Topics with their thresholds, a new custom topic, time, zone and language: all
    validated first, then written in one transaction."""
    current = {s.topic for s in subscribers.subscriptions(store, sub.id)}
    catalogue = topics.load_catalogue()
    wanted: dict[str, int] = {}
    for slug in dict.fromkeys(form.getall("topic", [])):
        if slug not in catalogue.topics and slug not in current:
            raise UsageError(f"未知主题 / unknown topic {slug!r}")
        raw = form.get(f"{THRESHOLD_FIELD}{slug}") or str(subscribers.DEFAULT_THRESHOLD)
        wanted[slug] = subscribers.validate_threshold(raw)
    custom = " ".join(form.get("custom", "").split())
    custom_threshold = subscribers.validate_threshold(
        form.get("custom_threshold") or str(subscribers.DEFAULT_THRESHOLD))
    if not wanted and not custom:
        raise UsageError("请至少保留一个主题，或选择退订 / keep at least one topic, or unsubscribe")
    settings = {
        "send_at": subscribers.validate_time(form.get("send_at", "")),
        "tz": subscribers.validate_tz(form.get("tz", "")),
        "lang": subscribers.validate_lang(form.get("lang", "")),
    }
    with store.db.atomic():
        if custom:
            wanted[topics.custom_topic(store, custom).slug] = custom_threshold
        for slug in current - set(wanted):
            subscribers.remove_subscription(store, sub.id, slug)
        for slug, threshold in wanted.items():
            subscribers.set_subscription(store, sub.id, slug, threshold)
        subscribers.update_settings(store, sub.id, **settings)
