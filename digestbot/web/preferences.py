"""Managing a subscription from a link: the preferences page and unsubscribing.

    GET  /preferences  topics, thresholds, followed authors, keywords in and out, time, zone,
                       language; pause, resume, unsubscribe
    POST /preferences  one of those actions, then back to the page (POST → redirect → GET)
    GET  /unsubscribe  a confirm page only
    POST /unsubscribe  the page's button, and the RFC 8058 one-click POST

`GET /unsubscribe?token=…` only shows a confirm page: mail scanners and link previews fetch
every URL in an email, so a GET must never change state. `POST /unsubscribe` does it, both
from the page's button and as the RFC 8058 one-click POST a mail client sends on its own
(body `List-Unsubscribe=One-Click`, the token in the URL). Unknown tokens get 404 and change
nothing. The unsubscribe link carries the subscriber's stored token; the preferences link a
signed, expiring one (`forms.token_subscriber`).
"""

from __future__ import annotations

import logging

from aiohttp import web
from multidict import MultiDictProxy

from digestbot import signing, subscribers, topics
from digestbot.errors import UsageError
from digestbot.models import Subscriber
from digestbot.store import Store
from digestbot.subscribers import library
from digestbot.subscribers import profile as profiles
from digestbot.subscribers.library_files import MAX_BYTES
from digestbot.web import forms
from digestbot.web.common import SETTINGS, STORE, notice, page, shown_address, write

log = logging.getLogger(__name__)

# Unsubscribe tokens are 43 characters (secrets.token_urlsafe(32)); far longer is not one.
MAX_TOKEN_LENGTH = 128

# Status → what `resume` may lead back from. Blocked (a Telegram user blocked the bot) and
# pending (not yet confirmed) are not the preferences page's to undo.
_RESUMABLE = ("paused", "unsubscribed", "bounced")

_DONE = {
    "save": ("已保存。", "Saved."),
    "pause": ("已暂停：恢复之前不会收到摘要。", "Paused: no digests until you resume."),
    "resume": ("已恢复订阅。", "Resumed."),
    "unsubscribe": ("已退订：不会再收到摘要。", "Unsubscribed: no more digests."),
    "library": ("文库已更新。", "Library updated."),
}


def _preferences_page(request: web.Request, sub: Subscriber, token: str, *,
                      status: int = 200, error: str | None = None, done: str | None = None
                      ) -> web.Response:
    store = request.app[STORE]
    subs = subscribers.subscriptions(store, sub.id)
    catalogue = topics.load_catalogue()
    custom = []
    for s in subs:
        if s.topic not in catalogue.topics:
            try:
                custom.append(topics.get_topic(s.topic, store))
            except KeyError:
                continue  # a topic that no longer exists; saving the form drops it
    return forms.form_page(
        request, "preferences.html", status=status, token=token, sub=sub,
        address=shown_address(sub), catalogue=catalogue, custom_topics=custom,
        thresholds={s.topic: s.threshold for s in subs}, error=error,
        done=_DONE.get(done or ""), resumable=sub.status in _RESUMABLE,
        default_threshold=subscribers.DEFAULT_THRESHOLD,
        profile=profiles.get_profile(store, sub.id), shelf=library.get_library(store, sub.id),
        library_threshold=library.DEFAULT_THRESHOLD, max_mb=MAX_BYTES // (1024 * 1024),
    )


def show(request: web.Request, sub: Subscriber, token: str, *, status: int = 200,
         error: str | None = None) -> web.Response:
    """The page again, with an error (the library section's form, `web.library`)."""
    return _preferences_page(request, sub, token, status=status, error=error)


def _unconfirmed() -> web.Response:
    # Only the confirm link activates: a pending reader holding a preferences token (an old
    # one, or one minted for them) must not unsubscribe and "resume" their way past it.
    return notice("请先确认订阅", "Confirm your subscription first",
                  "请点击确认邮件中的链接完成订阅，之后即可管理订阅。",
                  "Follow the link in the confirmation email; then you can manage it here.",
                  status=403, link="/", link_text="首页 / Home")


async def preferences(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    sub, problem = forms.token_subscriber(request, signing.PREFERENCES, token)
    if sub is None:
        return problem  # type: ignore[return-value]
    if sub.status == "pending":
        return _unconfirmed()
    return _preferences_page(request, sub, token, done=request.query.get("done"))


async def change_preferences(request: web.Request) -> web.Response:
    checked = await forms.signed_form(request, signing.PREFERENCES)
    if isinstance(checked, web.Response):
        return checked
    form, sub, token = checked
    if sub.status == "pending":
        return _unconfirmed()
    store = request.app[STORE]  # reads only: writes go through write(), off the loop
    action = form.get("action", "")
    # status change: (allowed from, new status); a button pressed twice changes nothing.
    moves = {"pause": (("active",), "paused"), "resume": (_RESUMABLE, "active"),
             "unsubscribe": (("active", "paused", "bounced"), "unsubscribed")}
    done: dict[str, str] = {}
    try:
        if action == "save":
            await write(request, _save, sub, form)
            done["done"] = action
        elif action in moves:
            allowed, status = moves[action]
            if sub.status in allowed:
                await write(request, subscribers.set_status, sub.id, status,
                            reason="preferences page")
                done["done"] = action
        else:
            raise UsageError(f"未知操作 / unknown action {action[:16]!r}")
    except UsageError as exc:
        return _preferences_page(request, sub, token, status=400, error=str(exc))
    log.info("subscriber #%s preferences: %s", sub.id, action)
    # POST → redirect → GET, so a reload does not submit again. Unsubscribing killed the
    # token in hand (and every other link): the page that offers "resume" gets a fresh one.
    now = subscribers.get(store, sub.id)
    if now is not None and now.link_gen != sub.link_gen:
        raise web.HTTPSeeOther(signing.preferences_path(
            request.app[SETTINGS], now, now=request.app[forms.STATE].now(), **done))
    raise web.HTTPSeeOther(signing.link_path("/preferences", token, **done))


def _save(store: Store, sub: Subscriber, form: MultiDictProxy[str]) -> None:
    """Topics with their thresholds, a new custom topic, time, zone, language and cadence: all
    validated first, then written in one transaction."""
    current = {s.topic for s in subscribers.subscriptions(store, sub.id)}
    catalogue = topics.load_catalogue()
    wanted: dict[str, int] = {}
    for slug in dict.fromkeys(form.getall("topic", [])):
        if slug not in catalogue.topics and slug not in current:
            raise UsageError(f"未知主题 / unknown topic {slug!r}")
        raw = form.get(f"{forms.THRESHOLD_FIELD}{slug}") or str(subscribers.DEFAULT_THRESHOLD)
        wanted[slug] = subscribers.validate_threshold(raw)
    custom = " ".join(form.get("custom", "").split())
    custom_threshold = subscribers.validate_threshold(
        form.get("custom_threshold") or str(subscribers.DEFAULT_THRESHOLD))
    if not wanted and not custom:
        raise UsageError("请至少保留一个主题，或选择退订 / keep at least one topic, or unsubscribe")
    # One name a line ("Bengio, Yoshua" has a comma); keywords a line or comma-separated.
    follows = _lines(form.get("follows", ""), commas=False)
    must = _lines(form.get("must", ""), commas=True)
    exclude = _lines(form.get("exclude", ""), commas=True)
    settings = {
        "send_at": subscribers.validate_time(form.get("send_at", "")),
        "tz": subscribers.validate_tz(form.get("tz", "")),
        "lang": subscribers.validate_lang(form.get("lang", "")),
        # Absent from a form rendered before weekly digests existed: keep what is stored.
        "cadence": subscribers.validate_cadence(form["cadence"]) if form.get("cadence") else None,
    }
    with store.db.atomic():
        if custom:
            wanted[topics.custom_topic(store, custom).slug] = custom_threshold
        for slug in current - set(wanted):
            subscribers.remove_subscription(store, sub.id, slug)
        for slug, threshold in wanted.items():
            subscribers.set_subscription(store, sub.id, slug, threshold)
        subscribers.update_settings(store, sub.id, **settings)
        profiles.replace_profile(store, sub.id, follows, must, exclude)


def _lines(text: str, *, commas: bool) -> list[str]:
    items = text.replace("，", ",").replace(",", "\n").splitlines() if commas else text.splitlines()
    return [item.strip() for item in items if item.strip()]


# -- /unsubscribe -----------------------------------------------------------------------------


def _subscriber(request: web.Request, token: str) -> Subscriber | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return subscribers.by_token(request.app[STORE], token)


def _not_found() -> web.Response:
    return page("not_found.html", status=404)


async def unsubscribe_form(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    sub = _subscriber(request, token)
    if sub is None:
        return _not_found()
    return page("unsubscribe.html", token=token, address=shown_address(sub),
                already=sub.status == "unsubscribed")


async def unsubscribe(request: web.Request) -> web.Response:
    form = await request.post()
    token = str(form.get("token") or request.query.get("token", ""))
    sub = _subscriber(request, token)
    if sub is None:
        return _not_found()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if sub.status != "unsubscribed":
        reason = "one-click (RFC 8058)" if one_click else "web page"
        await write(request, subscribers.set_status, sub.id, "unsubscribed", reason=reason)
        log.info("subscriber #%s unsubscribed via %s", sub.id, reason)
    return page("unsubscribed.html", address=shown_address(sub))
