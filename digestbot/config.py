"""Settings from a TOML file and the environment; the environment wins.

Every key has one TOML name (`db`, `smtp_url`, `openai_api_key`…) and one environment name
(DESIGN.md's table: `DIGESTBOT_DB`, `DIGESTBOT_SMTP_URL`, `OPENAI_API_KEY`…). Unknown TOML keys
and malformed values are errors that name the key and the expected form, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from digestbot.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secret:
    """A token or password: its repr and str never show the value, so logs cannot leak it."""

    value: str = field(repr=False)

    def get(self) -> str:
        return self.value

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self.value)


def _str(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    return raw.strip()


def _opt_str(key: str, raw: Any) -> str | None:
    value = _str(key, raw)
    return value or None


def _secret(key: str, raw: Any) -> Secret | None:
    value = _str(key, raw)
    return Secret(value) if value else None


def _int_in(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(key: str, raw: Any) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}: expected a whole number {lo}–{hi}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ConfigError(f"{key}: expected a whole number {lo}–{hi}, got {value}")
        return value

    return parse


def _float_min(lo: float) -> Callable[[str, Any], float]:
    def parse(key: str, raw: Any) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}: expected a number ≥ {lo}, got {raw!r}") from None
        if not math.isfinite(value) or value < lo:  # float() takes "nan" and "inf"
            raise ConfigError(f"{key}: expected a number ≥ {lo}, got {value}")
        return value

    return parse


def _url(*schemes: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        value = _str(key, raw)
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            want = " or ".join(f"{s}://…" for s in schemes)
            raise ConfigError(f"{key}: expected a URL like {want}, got {value!r}")
        return value

    return parse


def _opt_url(*schemes: str) -> Callable[[str, Any], str | None]:
    strict = _url(*schemes)

    def parse(key: str, raw: Any) -> str | None:
        return strict(key, raw) if _str(key, raw) else None

    return parse


def _smtp_url(key: str, raw: Any) -> Secret | None:
    # The URL carries the password, so it is kept as a Secret once validated.
    value = _str(key, raw)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            f"{key}: expected smtp://user:pass@host:port or smtps://… (?starttls=true), "
            f"got a value with scheme {parts.scheme!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{key}: the port is not a number 1–65535") from None
    return Secret(value)


def _list(allowed: tuple[str, ...] | None = None, pattern: str | None = None):
    def parse(key: str, raw: Any) -> list[str]:
        items = raw if isinstance(raw, list) else str(raw).split(",")
        values = [str(i).strip() for i in items if str(i).strip()]
        if not values:
            raise ConfigError(f"{key}: expected a comma-separated list, got nothing")
        for v in values:
            if allowed and v not in allowed:
                raise ConfigError(f"{key}: {v!r} is not one of {', '.join(allowed)}")
            if pattern and not re.fullmatch(pattern, v):
                raise ConfigError(f"{key}: {v!r} is not an arXiv category like cs.CL")
        return values

    return parse


def _networks(key: str, raw: Any) -> list[str]:
    """IP addresses and CIDR ranges ("127.0.0.1, 10.0.0.0/8"); empty trusts none."""
    items = raw if isinstance(raw, list) else str(raw).split(",")
    values = [str(i).strip() for i in items if str(i).strip()]
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {v!r} is not an IP address or CIDR range") from None
    return values


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(key: str, raw: Any) -> str:
        value = _str(key, raw)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _admin(key: str, raw: Any) -> str | None:
    """Where operator alerts go: an email address, `telegram:CHAT_ID` or `slack:CHANNEL`."""
    if raw is None or raw == "":
        return None
    value = _str(key, raw).strip()
    kind, sep, target = value.partition(":")
    if sep and kind in ("telegram", "slack"):
        if re.fullmatch(r"-?\d+|@\w{5,}" if kind == "telegram" else r"[#\w.-]+", target):
            return value
    elif re.fullmatch(r"[^<>@\s:]+@[^<>@\s]+", value):
        return value
    raise ConfigError(f"{key}: expected an email address, telegram:CHAT_ID or slack:CHANNEL, "
                      f"got {value!r}")


def _mail(key: str, raw: Any) -> str:
    """`addr@host` or `Display Name <addr@host>` (the name may be Chinese and have spaces)."""
    value = _str(key, raw)
    if re.search(r"[\x00-\x1f\x7f]", value):
        # A line break here would end the From header early: every send would fail (or
        # smuggle a header), so it is refused at load, not at the first send.
        raise ConfigError(f"{key}: must not contain line breaks or control characters")
    name, addr = parseaddr(value)
    if not re.fullmatch(r"[^<>@\s]+@[^<>@\s]+", addr) or (name and "<" not in value):
        raise ConfigError(
            f"{key}: expected an address like digestbot@example.org or "
            f"'arXiv 速递 <digestbot@example.org>', got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Key:
    name: str
    env: str
    parse: Callable[[str, Any], Any]
    default: Any
    doc: str


def _k(name: str, parse: Callable[[str, Any], Any], default: Any, doc: str, env: str = "") -> Key:
    return Key(name, env or f"DIGESTBOT_{name.upper()}", parse, default, doc)


CATEGORY = r"[a-z\-]+(\.[A-Za-z\-]+)?"

# One table drives parsing, the environment names, `init`'s commented file and the README.
KEYS: tuple[Key, ...] = (
    _k("db", _str, "var/digestbot.db", "SQLite database"),
    _k("outbox", _str, "var/outbox", "folder for .eml files when no SMTP is set"),
    _k("categories", _list(pattern=CATEGORY), ["cs.CL", "cs.AI", "cs.LG"], "arXiv categories"),
    _k("sources", _list(("listing", "rss")), ["listing", "rss"], "announcement sources, in order"),
    _k("arxiv_rss_url", _url("http", "https"), "https://rss.arxiv.org/rss/", "RSS base"),
    _k("arxiv_api_url", _url("http", "https"), "https://export.arxiv.org/api/query", "API query URL"),
    _k("arxiv_list_url", _url("http", "https"), "https://arxiv.org/list/", "listing pages base"),
    _k("arxiv_pdf_url", _url("http", "https"), "https://arxiv.org/pdf/", "PDF base"),
    _k("arxiv_delay", _float_min(0.0), 3.0, "seconds between requests to arXiv (politeness)"),
    _k("openai_api_key", _secret, None, "LLM API key (unset: offline scorer)", "OPENAI_API_KEY"),
    _k("openai_base_url", _opt_url("http", "https"), None, "LLM endpoint", "OPENAI_BASE_URL"),
    _k("llm_model", _str, "gpt-4.1-mini", "LLM model name"),
    _k("llm_json", _choice("schema", "object", "prompt"), "schema", "JSON mode: schema|object|prompt"),
    _k("llm_concurrency", _int_in(1, 256), 8, "LLM requests in flight"),
    _k("llm_batch", _int_in(1, 32), 8, "papers scored per LLM request (one shared prefix)"),
    _k("prefilter", _choice("on", "off"), "on",
       "drop papers no followed topic can reach before any LLM call (on|off)"),
    _k("llm_price_input", _float_min(0.0), 0.40, "USD per million prompt tokens"),
    _k("llm_price_cached", _float_min(0.0), 0.10, "USD per million cached prompt tokens"),
    _k("llm_price_output", _float_min(0.0), 1.60, "USD per million completion tokens"),
    _k("default_topic", _str, "post-training", "topic of the demo digest on a first run"),
    _k("secret", _secret, None, "key for signed links (made by `digestbot init`)"),
    _k("smtp_url", _smtp_url, None, "smtp://user:pass@host:port (unset: outbox folder)"),
    _k("mail_from", _mail, "digestbot@localhost", "From address"),
    _k("send_workers", _int_in(1, 16), 1,
       "processes sending a big batch of email at once (chat channels stay in one)"),
    _k("admin", _admin, None,
       "operator alerts: an email address, telegram:CHAT_ID or slack:CHANNEL (unset: none)"),
    _k("public_url", _opt_url("http", "https"), None, "base URL for unsubscribe links"),
    _k("http_port", _int_in(0, 65535), 8080, "port of the HTTP app in run/serve"),
    _k("trusted_proxies", _networks, ["127.0.0.1", "::1"],
       "proxies whose X-Forwarded-For is believed (IPs/CIDRs, comma-separated)"),
    _k("telegram_bot_token", _secret, None, "Telegram bot token", "TELEGRAM_BOT_TOKEN"),
    _k("telegram_api_url", _url("http", "https"), "https://api.telegram.org/bot", "Bot API base"),
    _k("slack_bot_token", _secret, None, "Slack bot token", "SLACK_BOT_TOKEN"),
    _k("slack_app_token", _secret, None, "Slack Socket Mode token", "SLACK_APP_TOKEN"),
    _k("slack_api_url", _url("http", "https"), "https://slack.com/api/", "Slack Web API base"),
    _k("slack_mode", _choice("thread", "sequential"), "thread",
       "long Slack digests: thread replies under a summary, or sequential messages"),
    _k("zotero_api_url", _url("http", "https"), "https://api.zotero.org",
       "Zotero Web API v3 base (reader libraries)"),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


def _field_type(key: Key) -> Any:
    """A Settings attribute's type: the return type of its key's parser (one source of truth)."""
    try:
        return get_type_hints(key.parse)["return"]
    except KeyError:
        raise TypeError(f"config key {key.name}: its parser needs a return annotation") from None


class _SettingsMethods:
    """What Settings offers beyond one attribute per key."""

    openai_api_key: Secret | None
    mail_from: str

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key)

    @property
    def mail_address(self) -> str:
        """The bare address of `mail_from` (envelope sender, mailto: unsubscribe)."""
        return parseaddr(self.mail_from)[1]

    @property
    def mail_domain(self) -> str:
        """The From address's domain: Message-IDs and List-Id are made under it."""
        return self.mail_address.rpartition("@")[2] or "localhost"


# A frozen dataclass with one field per KEYS entry, in the table's order and typed by its
# parser, then `config_path` (the file the values came from, if any). Generated so that adding
# a key to KEYS is the whole change: there is no second list of fields to keep in step.
Settings = make_dataclass(
    "Settings",
    [(key.name, _field_type(key)) for key in KEYS]
    + [("config_path", Path | None, field(default=None))],
    bases=(_SettingsMethods,),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "The validated configuration: one attribute per key of KEYS, plus config_path.",
    },
)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (DIGESTBOT_CONFIG); "
                          "`digestbot init` creates it") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a file (DIGESTBOT_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # A [digestbot] table is accepted so the file can share space with other tools.
    if set(data) == {"digestbot"} and isinstance(data["digestbot"], dict):
        data = data["digestbot"]
    unknown = sorted(set(data) - set(KEYS_BY_NAME))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"known keys are listed by `digestbot init --print`"
        )
    return data


def config_path(env: Mapping[str, str]) -> Path | None:
    """DIGESTBOT_CONFIG, else ./digestbot.toml when present."""
    if env.get("DIGESTBOT_CONFIG"):
        return Path(env["DIGESTBOT_CONFIG"])
    default = Path("digestbot.toml")
    return default if default.exists() else None


def load_settings(
    env: Mapping[str, str] | None = None, *, missing_ok: bool = False, **overrides: Any
) -> Settings:
    """Settings from the file named by the environment, then the environment, then overrides.

    `missing_ok`: a DIGESTBOT_CONFIG naming a file not there yet is fine (`init` creates it).
    """
    env = os.environ if env is None else env
    _warn_unknown_env(env)
    path = config_path(env)
    wanted = path is not None and (not missing_ok or path.exists() or path.is_symlink())
    file_values = _read_toml(path) if path and wanted else {}
    values: dict[str, Any] = {}
    for key in KEYS:
        if key.name in overrides:
            raw, source = overrides[key.name], key.name
        elif env.get(key.env) is not None:
            raw, source = env[key.env], key.env
        elif key.name in file_values:
            raw, source = file_values[key.name], f"{key.name} (in {path})"
        else:
            values[key.name] = key.default
            continue
        values[key.name] = key.parse(source, raw)
    return Settings(**values, config_path=path)


def _warn_unknown_env(env: Mapping[str, str]) -> None:
    """A typo in a variable name would otherwise fall back to the default without a word."""
    known = {k.env for k in KEYS} | {"DIGESTBOT_CONFIG"}
    unknown = sorted(n for n in env if n.startswith("DIGESTBOT_") and n not in known)
    if unknown:
        log.warning("ignoring unknown environment variable(s) %s; the README's configuration "
                    "table lists the known ones", ", ".join(unknown))


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def render_config(secret: str) -> str:
    """A commented digestbot.toml: every key with its default, unset ones commented out."""
    lines = [
        "# digestbot configuration. Environment variables (named on each line) win over this file.",
        "# Remove the leading '# ' to change a value.",
        "",
    ]
    for key in KEYS:
        lines.append(f"# {key.doc}  [env: {key.env}]")
        if key.name == "secret":
            lines.append(f'secret = "{secret}"')
        elif key.default is None:
            lines.append(f'# {key.name} = ""')
        else:
            lines.append(f"# {key.name} = {_toml_value(key.default)}")
        lines.append("")
    return "\n".join(lines)
