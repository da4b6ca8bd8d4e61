"""Validation of what readers and operators type: addresses, thresholds, time zones, times,
languages, paper caps, webhook URLs and statuses.

Shared by every front door (CLI, Telegram and Slack commands, the web preferences page), so a
bad time zone gets the same bilingual message wherever it is typed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import email_validator

from digestbot.errors import UsageError
from digestbot.models import (
    CADENCES,
    CHANNELS,
    SUBSCRIBER_STATUSES,
    Cadence,
    Lang,
    SubscriberStatus,
)

MAX_PAPERS_LIMIT = 500

# What people type for a language, in either language.
_LANG_ALIASES: dict[str, Lang] = {
    "zh": "zh", "cn": "zh", "zh-cn": "zh", "chinese": "zh", "中文": "zh",
    "en": "en", "english": "en", "英文": "en",
    "both": "both", "bilingual": "both", "双语": "both", "中英": "both",
}

# -- validation -------------------------------------------------------------------------------


def validate_email(addr: str) -> str:
    """The normalized address, lower-cased; no DNS lookups.

    Local parts are case-sensitive on paper but not at any real provider, and people type
    Alice@ one day and alice@ the next: lower-casing keeps them one subscriber.
    """
    try:
        return email_validator.validate_email(
            addr.strip(), check_deliverability=False
        ).normalized.lower()
    except email_validator.EmailNotValidError as exc:
        raise UsageError(zh="邮箱地址无效", en=f"invalid email address {addr!r}: {exc}") from None


def validate_threshold(raw: str | int) -> int:
    """0–100; "75" and "75%" are accepted, "abc", "60.5" and "200" are not."""
    text = str(raw).strip().removesuffix("%").strip()
    if not re.fullmatch(r"\d{1,3}", text) or int(text) > 100:
        raise UsageError(zh="阈值必须是 0–100 的整数",
                         en=f"threshold must be a whole number 0–100: {str(raw)!r}")
    return int(text)


# Files in the tz database that are not places: `localtime` is whatever the server runs in,
# `Factory` is a placeholder ("-00"), `posixrules` a template for POSIX TZ strings. A reader's
# digest time must not move with the server, so none of them is a reader's zone.
_NOT_A_PLACE = frozenset({"localtime", "factory", "posixrules", "posix/localtime",
                          "right/localtime", "posix/factory", "right/factory"})


def validate_tz(raw: str) -> str:
    """An IANA time zone name such as Asia/Shanghai or Europe/Berlin."""
    name = raw.strip()
    try:
        if name.lower() in _NOT_A_PLACE:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            zh="未知时区",
            en=f"unknown time zone {raw!r}: use an IANA name such as "
               "Asia/Shanghai, Europe/Berlin or America/New_York",
        ) from None
    return name


def validate_time(raw: str) -> str:
    """A local send time "HH:MM" (24-hour), normalized to two digits each ("8:05" → "08:05")."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", raw.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise UsageError(zh="时间格式应为 HH:MM (00:00–23:59)",
                         en=f"time must be HH:MM, 00:00–23:59: {raw!r}")
    return f"{int(match[1]):02d}:{match[2]}"


def validate_lang(raw: str) -> Lang:
    """zh, en or both (also 中文 / english / 双语 …)."""
    lang = _LANG_ALIASES.get(raw.strip().lower())
    if lang is None:
        raise UsageError(zh="语言应为 zh、en 或 both", en=f"language must be zh, en or both: {raw!r}")
    return lang


_CADENCE_ALIASES: dict[str, Cadence] = {
    "daily": "daily", "day": "daily", "每天": "daily", "每日": "daily", "off": "daily",
    "weekly": "weekly", "week": "weekly", "每周": "weekly", "on": "weekly",
}


def validate_cadence(raw: str) -> Cadence:
    """daily or weekly (also 每天 / 每周; on/off as in `/weekly on`)."""
    cadence = _CADENCE_ALIASES.get(raw.strip().lower())
    if cadence is None or cadence not in CADENCES:
        raise UsageError(zh="频率应为 daily(每天)或 weekly(每周)",
                         en=f"cadence must be daily or weekly: {raw!r}")
    return cadence


def validate_max_papers(raw: str | int) -> int:
    text = str(raw).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAPERS_LIMIT:
        raise UsageError(
            zh=f"每期篇数应为 1–{MAX_PAPERS_LIMIT} 的整数",
            en=f"max papers must be a whole number 1–{MAX_PAPERS_LIMIT}: {str(raw)!r}",
        )
    return int(text)


def validate_address(channel: str, raw: str) -> str:
    """An email address, a Telegram chat id (or @channel) or a Slack channel id."""
    value = raw.strip()
    if channel == "email":
        return validate_email(value)
    if channel == "telegram":
        if re.fullmatch(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}", value):
            return value
        raise UsageError(zh="Telegram chat id 应为数字或 @频道名",
                         en=f"a Telegram chat id is a number or @channel: {raw!r}")
    if channel == "slack":
        if re.fullmatch(r"[CGDU][A-Z0-9]{2,20}", value):
            return value
        raise UsageError(zh="Slack 频道 ID 形如 C0123456789",
                         en=f"a Slack channel id looks like C0123456789: {raw!r}")
    raise _unknown_channel(channel)


def _unknown_channel(channel: str) -> UsageError:
    return UsageError(zh="未知渠道", en=f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")


def validate_webhook_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        # The URL is a credential: name the problem, not the value.
        raise UsageError(zh="Slack webhook 应为 https:// 地址", en="a Slack webhook must be an https:// URL")
    return raw.strip()


def _check_status(status: SubscriberStatus) -> SubscriberStatus:
    # The type is not enforced at run time: a value from a row or a command line is checked here.
    if status not in SUBSCRIBER_STATUSES:
        raise UsageError(zh="未知状态",
                         en=f"unknown status {status!r}: use one of {', '.join(SUBSCRIBER_STATUSES)}")
    return status
