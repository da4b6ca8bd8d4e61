"""The argparse tree of `digestbot`: every command, its options and its `--help` text.

Parsing only; `digestbot.cli.main` dispatches the parsed command to its handler.
"""

from __future__ import annotations

import argparse
import textwrap
from datetime import date

from digestbot import __version__
from digestbot.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so bad usage is one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 1, got {n}")
    return n


def _describe(summary: str, *paragraphs: str) -> str:
    """A command's `--help` text: the bilingual one-liner, then what it does, wrapped."""
    return "\n\n".join([summary, *(textwrap.fill(p, 88) for p in paragraphs)])


def _command(sub: argparse._SubParsersAction, name: str, summary: str,
             *paragraphs: str) -> argparse.ArgumentParser:
    """A subcommand listed with `summary` whose own `--help` explains it in full."""
    return sub.add_parser(name, help=summary, description=_describe(summary, *paragraphs),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="digestbot",
        description=_describe(
            "arXiv 每日学术速递 — an arXiv daily digest bot",
            "Fetches the day's arXiv announcement, scores every paper against subscribers' "
            "topics, enriches the ones someone will receive (Chinese title, one-line summary, "
            "Chinese abstract, institutions) and delivers digests by email, Telegram and Slack. "
            "Each command's own --help explains it.",
        ),
        epilog=_describe(
            "配置 / configuration:",
            "digestbot.toml (or the file named by DIGESTBOT_CONFIG) and the environment, which "
            "wins; `digestbot init --print` lists every key with its environment name.",
            "Exit status: 0 success, 2 bad usage or configuration, 1 failure (network, feed, "
            "delivery), always with a one-line message that says what to do.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"digestbot {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = _command(
        sub, "init", "创建配置与数据库 / create a commented digestbot.toml and the database",
        "Writes every setting with its default and its environment variable (the environment "
        "wins over the file), plus a fresh secret for signed unsubscribe and preference links, "
        "then creates the SQLite database with all migrations applied. An existing file is kept "
        "unless --force is given.",
    )
    s.add_argument("--config", default=None, help="where to write the file (default: DIGESTBOT_CONFIG or ./digestbot.toml)")
    s.add_argument("--print", action="store_true", help="print the commented file instead of writing it")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")

    s = _command(
        sub, "fetch", "获取今日公告 / ingest tonight's arXiv announcement (or saved files)",
        "Asks the sources in the configured order (`sources`, default: the listing pages "
        "/list/{cat}/new, which change at 20:00 US Eastern, then the RSS feed, rebuilt about "
        "4 hours later), then fills comments, DOI, journal ref, dates and affiliations from "
        "the arXiv API. A failed API pass keeps what the listing or feed gave and is retried by "
        "the next fetch. A feed still serving an earlier batch is reported as stale, and a "
        "weekend or holiday as 'no announcement'; neither stores anything.",
        "--feed ingests saved RSS/Atom/API/listing files or URLs instead (the format is "
        "detected; no other network). --since catches up after downtime through the API. "
        "Ingesting the same announcement twice changes nothing; a truncated or malformed "
        "download is refused with one line and stores nothing. Requests to arXiv are spaced "
        "by arxiv_delay (3 s).",
    )
    s.add_argument("--feed", action="append", metavar="FILE_OR_URL",
                   help="ingest a saved RSS/Atom/API/listing file or URL (repeatable; no other network)")
    s.add_argument("--date", type=_date, metavar="YYYY-MM-DD",
                   help="announcement date to record when a file carries none (API answers)")
    s.add_argument("--since", type=_date, metavar="YYYY-MM-DD",
                   help="catch up after downtime through the arXiv API (v1 = new, vN = replace)")
    s.add_argument("--no-api", action="store_true", help="skip the API metadata pass")

    s = _command(
        sub, "enrich", "打分并增强 / score the day's papers and enrich those subscribers will get",
        "Scores every paper of the day against every active topic (with the LLM when "
        "OPENAI_API_KEY is set, otherwise with the offline keyword scorer), then adds a "
        "Chinese title, a one-line summary, a Chinese abstract and institutions to the papers "
        "some subscriber will receive. Each paper version is scored and enriched once and "
        "cached, so running it again costs nothing.",
    )
    s.add_argument("--limit", type=_positive, metavar="N", help="at most N papers")
    s.add_argument("--all", action="store_true", help="enrich every paper of the day, subscribed or not")
    s.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="announcement date (default: latest)")
    s.add_argument("--offline", action="store_true", help="use the offline scorer, no LLM")
    s.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                   help="also score this topic, subscribed or not (repeatable)")

    s = _command(
        sub, "score", "按专题打分 / score papers against one topic; JSONL out",
        'Prints one line {"id", "topic", "score", "reason"} (score 0–100) per paper of the '
        'day, or scores the {"id", "title", "abstract"} lines of --jsonl FILE instead.',
    )
    s.add_argument("--topic", required=True, help="topic name, alias or slug (e.g. 后训练)")
    s.add_argument("--jsonl", metavar="FILE", help='score {"id","title","abstract"} lines instead of the store')
    s.add_argument("--offline", action="store_true", help="force the offline scorer")
    s.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="announcement date (default: latest)")

    s = _command(
        sub, "topics", "专题目录 / print the topic catalogue",
        "The built-in topics with Chinese and English names, aliases and arXiv categories, "
        "plus custom topics. A name, alias or slug works wherever a topic is asked for.",
    )
    s.add_argument("--json", action="store_true", help="as JSON")

    s = _command(sub, "sub", "管理订阅者 / manage subscribers: add, import, export, list, rm, "
                 "follow, unfollow, keywords, library",
                 "`digestbot sub ACTION --help` explains each action.")
    ss = s.add_subparsers(dest="sub_command", metavar="ACTION", parser_class=_Parser)
    a = _command(
        ss, "add", "添加或更新订阅者 / add or update a subscriber",
        "One address on one channel: an email address, a Telegram chat id or a Slack channel "
        "id; adding an existing address updates it. The subscriber gets, once a day at --at "
        "in --tz, the papers scoring at least --threshold on one of their topics, never the "
        "same paper twice; with --weekly, on Mondays the week's best per topic instead.",
    )
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", metavar="ADDR", help="email address")
    who.add_argument("--telegram", metavar="CHAT_ID", help="Telegram chat id")
    who.add_argument("--slack", metavar="CHANNEL_ID", help="Slack channel id (C…)")
    a.add_argument("--slack-webhook", metavar="URL", help="post to an incoming webhook instead of the bot token")
    a.add_argument("--topic", action="append", required=True, help="topic (repeatable)")
    a.add_argument("--custom", action="store_true", help="unknown topic names become custom topics")
    a.add_argument("--threshold", default="60", metavar="N", help="minimum match 0–100 (default 60)")
    a.add_argument("--tz", default=None, metavar="ZONE", help="IANA time zone (default Asia/Shanghai)")
    a.add_argument("--at", default=None, metavar="HH:MM", help="local send time (default 08:30)")
    a.add_argument("--lang", choices=["zh", "en", "both"], default=None,
                   help="digest language (default zh)")
    a.add_argument("--max", type=_positive, default=None, metavar="N",
                   help="max papers per digest (default 50)")
    cadence = a.add_mutually_exclusive_group()
    cadence.add_argument("--cadence", choices=["daily", "weekly"], default=None,
                         help="daily digest, or on Mondays the week's best per topic (default daily)")
    cadence.add_argument("--weekly", dest="cadence", action="store_const", const="weekly",
                         help="same as --cadence weekly")
    _import_export(ss)
    lst = _command(ss, "list", "列出订阅者 / list subscribers",
                   "Each subscriber's id, channel, address, status, language, send time and topics.")
    lst.add_argument("--json", action="store_true", help="as JSON")
    rm = _command(ss, "rm", "删除订阅者 / remove a subscriber",
                  "Removes the subscriber and their subscriptions (ids from `digestbot sub list`).")
    rm.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    f = _command(ss, "follow", "关注作者 / follow authors",
                 "A new paper by a followed author comes in the reader's next digest whatever its "
                 "topic scores, with the spelling the paper uses. Names match with initials, "
                 "accents and \"Last, First\" (Y. Bengio ~ Yoshua Bengio); a surname alone matches "
                 "no one. Without --author, shows what the reader follows.")
    f.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    f.add_argument("--author", action="append", default=[], metavar="NAME", help="author (repeatable)")
    uf = _command(ss, "unfollow", "取消关注作者 / unfollow authors")
    uf.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    uf.add_argument("--author", action="append", default=[], metavar="NAME", help="author (repeatable)")
    uf.add_argument("--all", action="store_true", help="unfollow everyone")
    k = _command(ss, "keywords", "关键词 / keywords in and out",
                 "--must: only papers whose title or abstract mentions one of these; --exclude: "
                 "never papers that mention one (case, width and spacing do not matter; Chinese "
                 "too). A followed author's paper comes regardless. Without options, shows them.")
    k.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    k.add_argument("--must", action="append", default=[], metavar="WORD", help="required word (repeatable)")
    k.add_argument("--exclude", action="append", default=[], metavar="WORD", help="excluded word (repeatable)")
    k.add_argument("--remove", action="append", default=[], metavar="WORD", help="drop a word (repeatable)")
    k.add_argument("--clear", choices=["must", "exclude", "all"], help="drop every word of a kind first")
    lib = _command(ss, "library", "文库 / a reader's paper library as a profile",
                   "Import a BibTeX or RIS file, or a Zotero library (Web API v3, a read-only key "
                   "from DIGESTBOT_ZOTERO_KEY or --key-file, never the command line). Each day's "
                   "papers close to it (local embeddings) come with the nearest library paper as "
                   "the reason. Importing again replaces it. Without options, shows it.")
    lib.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    lib.add_argument("--file", metavar="BIB_OR_RIS", help="BibTeX (.bib) or RIS (.ris) file")
    lib.add_argument("--zotero", metavar="USER_ID", help="Zotero user id (zotero.org/settings/keys)")
    lib.add_argument("--key-file", metavar="FILE", help="file holding the Zotero key")
    lib.add_argument("--refresh", action="store_true", help="fetch the Zotero library again")
    lib.add_argument("--clear", action="store_true", help="forget the library")
    lib.add_argument("--threshold", default=None, metavar="N", help="minimum match 0–100 (default 60)")

    s = _command(
        sub, "feedback", "读者的 👍/👎 / a reader's votes",
        "The papers the reader voted on (👍/👎 from a digest's buttons or links), newest "
        "first; the last vote on a paper counts. With 5 or more votes of both kinds they "
        "re-rank the reader's digest.",
    )
    s.add_argument("id", type=_positive, metavar="ID", help="subscriber id")
    s.add_argument("--json", action="store_true", help="as JSON")

    s = _command(
        sub, "preview", "预览摘要 / print a subscriber's digest without sending it",
        "Renders what the subscriber gets for the day (default: the latest announcement) as "
        "email HTML or text, Telegram HTML or Slack blocks. Sends nothing, records nothing.",
    )
    s.add_argument("--subscriber", type=_positive, required=True, metavar="ID", help="subscriber id")
    s.add_argument("--format", choices=["html", "text", "telegram", "slack"], default="text",
                   help="which rendering (default text)")
    s.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="announcement date (default: latest)")

    s = _command(
        sub, "send", "投递摘要 / deliver due digests",
        "Sends every digest whose subscriber's send time has come, through the outbox: a crash "
        "or a second run resumes without duplicates or gaps. Without DIGESTBOT_SMTP_URL, emails "
        "are written as .eml files to DIGESTBOT_OUTBOX.",
    )
    s.add_argument("--now", action="store_true", help="ignore subscribers' send times")
    s.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    s.add_argument("--workers", type=int, metavar="N",
                   help="processes sending a big email batch at once (default: "
                        "DIGESTBOT_SEND_WORKERS, 1)")

    s = _command(
        sub, "once", "跑一遍 / fetch → score → enrich → send --now, then exit (cron-friendly)",
        "One whole day's run. --demo is the first-run mode of `make run`: with no subscriber "
        "it adds demo@localhost for the default topic, and when arXiv cannot be reached it "
        "uses the bundled sample announcement.",
    )
    s.add_argument("--feed", action="append", metavar="FILE_OR_URL", help="ingest files instead of fetching")
    s.add_argument("--no-api", action="store_true", help="skip the API metadata pass")
    s.add_argument("--demo", action="store_true",
                   help="first-run mode: with no subscribers add a demo one for the default topic; "
                   "if arXiv is unreachable use the bundled sample announcement")

    s = _command(
        sub, "run", "常驻运行 / scheduler + Telegram + Slack + HTTP app, until SIGTERM",
        "Fetches each announcement as it appears (Sunday–Thursday 20:00 US Eastern), scores "
        "and enriches it, and sends each subscriber's digest at their local time; beside it "
        "run the Telegram and Slack bots (when their tokens are set) and the HTTP app on "
        "DIGESTBOT_HTTP_PORT. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    s.add_argument("--now", metavar="ISO_TIME", help="start the clock here (testing)")
    s.add_argument("--speed", type=float, default=1.0, help="clock speed-up factor (testing)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address of the HTTP app (0.0.0.0 in a container)")

    s = _command(
        sub, "serve", "网页服务 / the HTTP app alone (unsubscribe, preferences, daily pages)",
        "Signed unsubscribe and preference links, email signup, daily pages and /healthz, "
        "without the scheduler or the bots.",
    )
    s.add_argument("--port", type=int, default=None, help="port (default DIGESTBOT_HTTP_PORT, 8080)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")

    s = _command(
        sub, "stats", "统计 / papers, enrichments, LLM tokens and cost, deliveries",
        "Counts from the database: papers and announcements by type, scores, enriched papers, "
        "LLM calls, failures and tokens (with an estimated cost), subscribers and deliveries "
        "by status.",
    )
    s.add_argument("--json", action="store_true",
                   help="one JSON object: papers, announcements, enriched, llm, subscribers, deliveries")

    s = _command(
        sub, "status", "运行状态 / the last announcement, the evening's stages, breakers",
        "What /status shows: the last announcement seen and the next one expected (or why none "
        "is), when the evening's fetch, scoring, enrichment and digests happened, digests by "
        "channel and status, the LLM's calls and cost since the last announcement, and any "
        "open circuit breaker.",
    )
    s.add_argument("--json", action="store_true", help="the same JSON object as /status")

    s = _command(
        sub, "inbound", "邮件退订 / handle a mailed unsubscribe request (for a mail server's pipe)",
        "Reads one email (standard input, or --file) whose subject is the unsubscribe-<token> "
        "that every digest's List-Unsubscribe mailto link sets, and unsubscribes that reader "
        "as the web link would. A token nobody holds exits 0, so the mail server bounces "
        "nothing; a mail that is no unsubscribe request exits 2.",
    )
    s.add_argument("--file", metavar="FILE", help="read the message from FILE, not standard input")
    return p


def _import_export(ss: argparse._SubParsersAction) -> None:
    columns = ("Columns (a CSV header row, or the keys of each JSON line): channel, address, "
               "topics (several separated by ; or | in CSV, a list in JSON), threshold, zone, "
               "time, lang, max; only channel and address are required, the others default as "
               "in `sub add`.")
    i = _command(
        ss, "import", "批量导入订阅者 / add or update many subscribers from a CSV or JSONL file",
        "Reads FILE (- for standard input) as CSV with a header row or as JSON Lines (by the "
        ".csv/.jsonl extension, else by its content) and adds or updates every reader in it, "
        "as `sub add` would, in one transaction: every row is validated first, each bad row is "
        "reported with its line number, and one bad row means nothing is imported (exit 2).",
        columns,
        "Imported readers are active at once, email ones included: like `sub add`, an import "
        "is the operator's word and sends no confirmation mail.",
    )
    i.add_argument("file", metavar="FILE", help="CSV or JSONL file, - for standard input")
    i.add_argument("--format", choices=["csv", "jsonl"], default=None,
                   help="override the format guessed from the extension or content")
    i.add_argument("--custom", action="store_true", help="unknown topic names become custom topics")
    e = _command(
        ss, "export", "导出订阅者 / write active subscribers as CSV or JSONL",
        "Writes every active reader in the format `sub import` reads (CSV, or JSON Lines for a "
        ".jsonl FILE or --format jsonl) to FILE or standard output. A reader whose topics have "
        "different thresholds gets one row per threshold; custom topics are written as their "
        "text (import them back with --custom).",
        columns,
        "No secrets: unsubscribe tokens and Slack webhook URLs are never exported (a webhook "
        "URL is a credential), so a Slack reader posting through a webhook needs "
        "`sub add --slack-webhook` again after an import elsewhere.",
    )
    e.add_argument("file", metavar="FILE", nargs="?", default=None, help="output file (default: standard output)")
    e.add_argument("--format", choices=["csv", "jsonl"], default=None,
                   help="csv (default) or jsonl; a .jsonl FILE means jsonl")
