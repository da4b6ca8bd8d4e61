"""Signup with double opt-in for email readers, and the home page that carries its form.

    GET  /             today's overview and the signup form
    POST /subscribe    a *pending* subscriber + a confirmation email with a signed link
    GET  /confirm      a page with a button (mail scanners fetch links; GET changes nothing)
    POST /confirm      pending → active

Signing up an address that is already subscribed changes nothing on the web and shows the
very same page: the owner gets an email with their preferences link instead, so nobody
learns from the page whether an address is known, and a stranger cannot change someone
else's topics. Signups are rate limited per client IP and per address (`forms.STATE`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from digestbot import render, signing, subscribers, topics
from digestbot.channels import email as email_channel
from digestbot.config import Settings
from digestbot.errors import FormError, UsageError
from digestbot.models import Subscriber, Topic
from digestbot.sources.papers import latest_announcement_date
from digestbot.store import Store
from digestbot.web import forms, pages
from digestbot.web.common import SETTINGS, STORE, notice, page, shown_address, write

log = logging.getLogger(__name__)


def _client_ip(request: web.Request) -> str:
    """The address a signup is counted against.

    Deployed as documented (a TLS proxy on the host, the app on 127.0.0.1 or behind Docker's
    loopback port), every request arrives from the proxy, so the peer alone would make the
    per-IP limit one limit for the whole site. When the peer is one of
    DIGESTBOT_TRUSTED_PROXIES (loopback by default), the last X-Forwarded-For entry (the one
    that proxy appended, which a client cannot choose) names the reader instead; any other
    peer is taken as it is, so a LAN client of `serve --host 0.0.0.0` cannot pick its own.
    """
    peer = request.remote or "-"
    forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
    try:
        peer_ip = ipaddress.ip_address(peer)
        ipaddress.ip_address(forwarded)
        if isinstance(peer_ip, ipaddress.IPv6Address) and peer_ip.ipv4_mapped:
            peer_ip = peer_ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    except ValueError:
        return peer
    proxies = request.app[SETTINGS].trusted_proxies
    trusted = any(peer_ip in ipaddress.ip_network(p, strict=False) for p in proxies)
    return forwarded if trusted else peer


def _mailbox(email: str) -> str:
    """The mailbox an address delivers to, for the per-address limit: `name+tag@` is `name@`
    at every provider that supports tags, so tags do not buy more confirmation emails."""
    local, _, domain = email.rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


# -- GET / : overview and signup form ---------------------------------------------------------


def _form_defaults() -> dict[str, Any]:
    return {"email": "", "topics": [], "custom": "", "threshold": subscribers.DEFAULT_THRESHOLD,
            "send_at": subscribers.DEFAULT_SEND_AT, "tz": subscribers.DEFAULT_TZ,
            "lang": subscribers.DEFAULT_LANG}


def _home(request: web.Request, *, status: int = 200, error: str | None = None,
          values: dict[str, Any] | None = None) -> web.Response:
    store = request.app[STORE]
    day = latest_announcement_date(store)
    context = {
        "day": day, "tree": pages.overview(store, day) if day else [],
        "min_score": subscribers.DEFAULT_THRESHOLD, "catalogue": topics.load_catalogue(),
        "form": {**_form_defaults(), **(values or {})}, "error": error,
    }
    unavailable = forms.missing_config(request, need_public_url=True)
    if unavailable is not None:
        # The overview still works; only the form needs signing and a public address.
        return page("signup.html", status=status, signup_off=True, csrf="", nonce="", **context)
    return forms.form_page(request, "signup.html", status=status, signup_off=False, **context)


async def home(request: web.Request) -> web.Response:
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
    """(subscriber, already): a new signup, or one for an address that left, is written as
    pending; a pending one is left as its first signup made it (the confirmation is sent
    again: a stranger typing the address cannot swap the owner's choices before they
    confirm); a confirmed subscriber is left exactly as they are (`already` = True)."""
    existing = subscribers.by_address(store, "email", signup.email)
    if existing is not None and existing.status in ("active", "paused", "blocked"):
        return existing, True
    if existing is not None and existing.status == "pending":
        return existing, False
    with store.db.atomic():
        slugs = [t.slug for t in signup.topics]
        if signup.custom:
            slugs.append(topics.custom_topic(store, signup.custom).slug)
        if existing is not None:
            # The latest form wins for someone no longer subscribed (unsubscribed, bounced).
            subscribers.remove_subscription(store, existing.id, None)
        sub = subscribers.add_or_update(
            store, channel="email", address=signup.email, topics=list(dict.fromkeys(slugs)),
            threshold=signup.threshold, tz=signup.tz, send_at=signup.send_at, lang=signup.lang,
            status="pending",
        )
    return sub, False


async def subscribe(request: web.Request) -> web.Response:
    unavailable = forms.missing_config(request, need_public_url=True)
    if unavailable is not None:
        return unavailable
    state = request.app[forms.STATE]
    try:
        form = await forms.read_form(request)
    except FormError as exc:
        return _home(request, status=exc.status, error=str(exc))
    if not forms.csrf_ok(request, form):
        return forms.csrf_rejected()
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
    if not state.per_address.allow(_mailbox(signup.email), now):
        return _too_many()
    sub, already = await write(request, _apply_signup, signup)
    try:
        await send_confirmation(request.app[SETTINGS], sub, already=already, now=now)
    except Exception as exc:  # noqa: BLE001 - the reader gets a page either way
        log.warning("confirmation email for subscriber #%s not sent: %s", sub.id, exc)
        return notice("暂时无法发送确认邮件", "Could not send the confirmation email",
                      "请稍后再试。", "Please try again later.", status=503)
    log.info("signup: subscriber #%s %s", sub.id, "already confirmed" if already else "pending")
    # The same words whether the address was new, pending or long subscribed.
    return notice("请查收邮件", "Check your inbox",
                  f"我们已向 {signup.email} 发送一封邮件，点击其中的链接即可完成订阅。",
                  f"We sent an email to {signup.email}; follow its link to finish.")


def _too_many() -> web.Response:
    return notice("尝试次数过多", "Too many attempts", "请一小时后再试。",
                  "Please try again in an hour.", status=429)


async def send_confirmation(settings: Settings, sub: Subscriber, *, already: bool,
                            now: float | None = None) -> None:
    """The double opt-in email, or — for a confirmed address — its preferences link."""
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


async def confirm_form(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    sub, problem = forms.token_subscriber(request, signing.CONFIRM, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if sub.status not in ("pending", "active", "paused"):
        return forms.invalid()
    # Already confirmed: still only a page with a button. Mail scanners follow GET links, so
    # a GET never hands out a preferences link; the POST does, to whoever presses the button.
    return forms.form_page(request, "confirm.html", token=token, address=shown_address(sub),
                           already=sub.status != "pending")


async def confirm(request: web.Request) -> web.Response:
    checked = await forms.signed_form(request, signing.CONFIRM)
    if isinstance(checked, web.Response):
        return checked
    _, sub, _ = checked
    if sub.status == "pending":
        await write(request, subscribers.set_status, sub.id, "active", reason="confirmed by email")
        log.info("subscriber #%s confirmed", sub.id)
        sub = subscribers.get(request.app[STORE], sub.id) or sub
    return _after_confirm(request, sub)


def _after_confirm(request: web.Request, sub: Subscriber) -> web.Response:
    if sub.status not in ("active", "paused"):
        # Unsubscribed or bounced since: an old confirm link must not bring them back.
        return forms.invalid()
    link = signing.preferences_path(request.app[SETTINGS], sub, now=request.app[forms.STATE].now())
    return notice("订阅成功", "You are subscribed",
                  f"{shown_address(sub)} 将在每天 {sub.send_at}（{sub.tz}）收到摘要。",
                  f"{shown_address(sub)} will get the digest daily at {sub.send_at} ({sub.tz}).",
                  link=link, link_text="管理订阅 / Manage subscription")
