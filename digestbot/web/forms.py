"""What the signup, confirm and preferences forms share: field caps, CSRF, signed-link checks,
and the clock and rate limits they read.

Links carry HMAC-signed, expiring tokens (`digestbot.signing`); every form carries a CSRF
field tied to a cookie. Without DIGESTBOT_SECRET (or DIGESTBOT_PUBLIC_URL, needed to put a
link in an email) these pages say so with a 503 instead of signing with something guessable.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from digestbot import signing, subscribers, topics
from digestbot.errors import FormError
from digestbot.models import Subscriber
from digestbot.subscribers import feedback, profile
from digestbot.web.common import SETTINGS, STORE, notice, page

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
    "cadence": 8,
    "topic": 64,
    # The preferences page's profile boxes: every allowed line at its longest, one a line.
    "follows": profile.MAX_FOLLOWS * (profile.MAX_NAME_CHARS + 2),
    "must": profile.MAX_KEYWORDS * (profile.MAX_KEYWORD_CHARS + 2),
    "exclude": profile.MAX_KEYWORDS * (profile.MAX_KEYWORD_CHARS + 2),
    "action": 16,
    "csrf": 64,
    "token": signing.MAX_TOKEN_LENGTH,
    # A 👍/👎 form (web.feedback): an arXiv id (old style "math.AG/0601001" is the longest).
    "paper": 40,
    "vote": 4,
    "back": 200,  # the day page a vote was cast on, to return to
}
THRESHOLD_FIELD = "thr."  # preferences: one threshold input per topic, "thr.<slug>"
MAX_TOPICS = 64

CSRF_COOKIE = "digestbot_csrf"
_COOKIE_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")


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


@dataclass
class SignupState:
    """The clock tokens and limits read (tests replace `now`) and the limiters themselves."""

    now: Callable[[], float] = time.time
    per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(*IP_LIMIT))
    per_address: RateLimiter = field(default_factory=lambda: RateLimiter(*ADDRESS_LIMIT))


STATE = web.AppKey("signup_state", SignupState)


def form_page(request: web.Request, template: str, status: int = 200, **context: Any
              ) -> web.Response:
    """A page with forms: each carries the CSRF field matching this browser's cookie."""
    secret = signing.secret_of(request.app[SETTINGS])
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = not _COOKIE_RE.fullmatch(cookie)
    if fresh:
        cookie = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(16)
    response = page(template, status=status, csrf=signing.csrf_token(secret, cookie),
                    nonce=nonce, **context)
    # The only script is the nonce'd time zone guess on the signup form.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    if fresh:
        public = request.app[SETTINGS].public_url or ""
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="Lax", path="/",
                            secure=public.startswith("https://"))
    return response


def _unavailable(what: str) -> web.Response:
    return notice(
        "注册与订阅管理暂不可用", "Signup and preferences are unavailable",
        f"运营者尚未设置 {what}。", f"The operator has not set {what} (`digestbot init` writes a "
        "secret; DIGESTBOT_PUBLIC_URL is this site's address).", status=503)


def missing_config(request: web.Request, *, need_public_url: bool) -> web.Response | None:
    """The 503 page when the site cannot sign (or address) links, else None."""
    settings = request.app[SETTINGS]
    if not settings.secret:
        return _unavailable("DIGESTBOT_SECRET")
    if need_public_url and not settings.public_url:
        return _unavailable("DIGESTBOT_PUBLIC_URL")
    return None


async def read_form(request: web.Request) -> MultiDictProxy[str]:
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


def csrf_ok(request: web.Request, form: Mapping[str, str]) -> bool:
    secret = signing.secret_of(request.app[SETTINGS])
    return signing.check_csrf(secret, request.cookies.get(CSRF_COOKIE), form.get("csrf"))


def csrf_rejected() -> web.Response:
    return notice("表单已过期", "This form has expired",
                  "请重新打开页面后再提交（需要允许 Cookie）。",
                  "Reload the page and submit again (cookies must be allowed).", status=403)


# -- signed links -----------------------------------------------------------------------------


def token_subscriber(request: web.Request, purpose: str, token: str
                     ) -> tuple[Subscriber | None, web.Response | None]:
    """(subscriber, None) for a genuine token, else (None, the page that explains: also when
    the site has no secret to check it with)."""
    unavailable = missing_config(request, need_public_url=False)
    if unavailable is not None:
        return None, unavailable
    secret = signing.secret_of(request.app[SETTINGS])
    try:
        payload = signing.verify(secret, purpose, token, now=request.app[STATE].now())
    except signing.TokenExpired:
        return None, _expired(purpose)
    except signing.TokenError:
        return None, invalid()
    named = signing.parse_subject(payload)
    if named is None:
        return None, invalid()
    sub = subscribers.get(request.app[STORE], named[0])
    if sub is None or sub.link_gen != named[1]:
        # Genuine, but for a reader since removed or unsubscribed: it must not reach whoever
        # holds that id or address now.
        return None, stale()
    return sub, None


def invalid() -> web.Response:
    return notice("链接无效", "This link is not valid",
                  "请使用邮件中的完整链接，或重新订阅。",
                  "Use the full link from your email, or sign up again.", status=404,
                  link="/", link_text="首页 / Home")


def stale() -> web.Response:
    return notice("此链接已失效", "This link is no longer valid",
                  "这个订阅已退订或已删除，旧邮件中的链接不再有效。如需订阅，请重新注册。",
                  "The subscription it belonged to was cancelled or removed; links from its "
                  "emails no longer work. Sign up again to subscribe.", status=410,
                  link="/", link_text="首页 / Home")


def _expired(purpose: str) -> web.Response:
    if purpose == signing.CONFIRM:
        zh, en = "确认链接已过期，请重新订阅。", "The confirmation link has expired; please sign up again."
    else:
        zh, en = "此链接已过期，请使用最近一封摘要邮件中的链接。", \
            "This link has expired; use the one in your latest digest."
    return notice("链接已过期", "This link has expired", zh, en, status=410,
                  link="/", link_text="首页 / Home")


async def signed_form(request: web.Request, purpose: str
                      ) -> tuple[MultiDictProxy[str], Subscriber, str] | web.Response:
    """(form, subscriber, token) of a POST that acts on a signed link, or the page saying why
    not: every field is within its cap, the token is genuine and unexpired for `purpose` (on
    a site with a secret), and the CSRF field matches the cookie."""
    try:
        form = await read_form(request)
    except FormError as exc:
        return notice("无法处理", "Cannot process this form", "", str(exc), status=exc.status)
    token = form.get("token", "")
    sub, problem = token_subscriber(request, purpose, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if not csrf_ok(request, form):
        return csrf_rejected()
    return form, sub, token


def feedback_page(request: web.Request, template: str, paper_ids: list[str], *, status: int = 200,
                  **context: Any) -> web.Response:
    """A page of papers for a reader holding a 👍/👎 link's token (`?token=`): each paper with
    its two buttons (forms posting to /feedback, back to this page), their votes shown.
    The page names a reader, so it is never cached; a bad token gets the page explaining."""
    token = request.query.get("token", "")
    sub, problem = token_subscriber(request, signing.FEEDBACK, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    votes = feedback.votes_on(request.app[STORE], sub.id, paper_ids)
    response = form_page(request, template, status=status, vote_token=token, votes=votes,
                         back=request.path, **context)
    response.headers["Cache-Control"] = "no-store"
    return response
