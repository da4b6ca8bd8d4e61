"""Subscribers: store functions, validation messages, and `digestbot sub add/list/rm`."""

from __future__ import annotations

import json

import pytest

from digestbot import subscribers
from digestbot.cli import main
from digestbot.errors import UsageError
from digestbot.store import Store


def table_counts(store: Store) -> dict[str, int]:
    return {t: store.db[t].count for t in ("subscribers", "subscriptions", "custom_topics")}


def test_add_creates_with_defaults_and_unguessable_token(store: Store) -> None:
    sub = subscribers.add_or_update(store, channel="email", address="alice@example.org",
                                    topics=["post-training"])
    assert (sub.lang, sub.tz, sub.send_at, sub.max_papers, sub.status) == (
        "zh", "Asia/Shanghai", "08:30", 50, "active")
    assert len(sub.token) >= 40 and sub.created_at and sub.updated_at
    other = subscribers.add_or_update(store, channel="email", address="bob@example.org",
                                      topics=["post-training"])
    assert other.token != sub.token
    assert subscribers.by_token(store, sub.token) == sub
    assert subscribers.by_token(store, "") is None
    assert subscribers.by_address(store, "email", "alice@example.org") == sub
    assert [s.topic for s in subscribers.subscriptions(store, sub.id)] == ["post-training"]


def test_duplicate_updates_instead_of_duplicating(store: Store) -> None:
    first = subscribers.add_or_update(store, channel="email", address="alice@example.org",
                                      topics=["post-training"], threshold=60)
    again = subscribers.add_or_update(store, channel="email", address="alice@example.org",
                                      topics=["post-training", "agents"], threshold=75,
                                      lang="en", send_at="07:00")
    assert again.id == first.id and again.token == first.token
    assert (again.lang, again.send_at, again.tz) == ("en", "07:00", "Asia/Shanghai")
    assert store.db["subscribers"].count == 1
    subs = {s.topic: s.threshold for s in subscribers.subscriptions(store, first.id)}
    assert subs == {"post-training": 75, "agents": 75}


def test_settings_status_and_removal(store: Store) -> None:
    assert not subscribers.anyone_subscribed(store)
    sub = subscribers.add_or_update(store, channel="telegram", address="12345",
                                    topics=["post-training", "agents"])
    changed = subscribers.update_settings(store, sub.id, tz="Europe/Berlin", send_at="7:05",
                                          lang="双语", max_papers=10)
    assert (changed.tz, changed.send_at, changed.lang, changed.max_papers) == (
        "Europe/Berlin", "07:05", "both", 10)
    with pytest.raises(UsageError, match="Mars/Base"):
        subscribers.update_settings(store, sub.id, tz="Mars/Base")
    assert subscribers.get(store, sub.id).tz == "Europe/Berlin"
    subscribers.set_status(store, sub.id, "paused", "user asked")
    assert [s.id for s in subscribers.list_all(store, ("active",))] == []
    assert subscribers.get(store, sub.id).status_reason == "user asked"
    subscribers.remove_subscription(store, sub.id, "agents")
    assert [s.topic for s in subscribers.subscriptions(store, sub.id)] == ["post-training"]
    subscribers.remove_subscription(store, sub.id, None)
    assert subscribers.subscriptions(store, sub.id) == []
    store.db["delivered_papers"].insert({"subscriber_id": sub.id, "arxiv_id": "2608.00001",
                                         "version": 1, "delivery_id": None})
    assert subscribers.remove(store, sub.id) is True
    assert subscribers.get(store, sub.id) is None
    assert subscribers.by_address(store, "telegram", "12345") is None
    assert subscribers.list_all(store) == []
    # The outbox's record stays (rows are never deleted); the reader is gone as a subscriber.
    assert store.db["delivered_papers"].count == 1
    assert subscribers.remove(store, sub.id) is False
    # `enrich` on a fresh install enriches everything; a removed reader still means "not fresh".
    assert subscribers.anyone_subscribed(store)
    # The address may subscribe again: a fresh subscriber, never the removed one's id.
    again = subscribers.add_or_update(store, channel="telegram", address="12345",
                                      topics=["agents"])
    assert again.id != sub.id and again.token != sub.token


@pytest.mark.parametrize(("func", "raw", "message"), [
    (subscribers.validate_threshold, "abc",
     "阈值必须是 0–100 的整数 / threshold must be a whole number 0–100: 'abc'"),
    (subscribers.validate_threshold, "200", "threshold must be a whole number 0–100: '200'"),
    (subscribers.validate_threshold, "60.5", "0–100: '60.5'"),
    (subscribers.validate_tz, "Mars/Base", "unknown time zone 'Mars/Base'"),
    (subscribers.validate_time, "25:00", "time must be HH:MM, 00:00–23:59: '25:00'"),
    (subscribers.validate_time, "8h", "time must be HH:MM"),
    (subscribers.validate_lang, "fr", "language must be zh, en or both: 'fr'"),
    (subscribers.validate_email, "not-an-email", "invalid email address 'not-an-email'"),
])
def test_validation_messages(func, raw: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        func(raw)
    assert message in str(info.value)


def test_validation_normalizes() -> None:
    assert subscribers.validate_threshold(" 75% ") == 75
    assert subscribers.validate_threshold("0") == 0
    assert subscribers.validate_time("8:30") == "08:30"
    assert subscribers.validate_tz("America/New_York") == "America/New_York"
    assert subscribers.validate_email(" Alice@Example.ORG ") == "alice@example.org"
    assert subscribers.validate_lang("EN") == "en"


@pytest.mark.parametrize("raw", ["C0123", "C0123456789", "G01ABCDEF"])
def test_slack_channel_ids_as_the_docs_write_them(raw: str) -> None:
    assert subscribers.validate_address("slack", raw) == raw


@pytest.mark.parametrize("raw", ["general", "#general", "c0123", "C0", "C" + "1" * 30])
def test_slack_channel_names_are_not_ids(raw: str) -> None:
    with pytest.raises(UsageError, match="Slack"):
        subscribers.validate_address("slack", raw)


def test_cli_add_list_update_rm(store: Store, capsys) -> None:
    assert main(["sub", "add", "--email", "Alice@Example.ORG", "--topic", "后训练",
                 "--topic", "post-training", "--threshold", "70", "--tz", "Europe/Berlin",
                 "--at", "07:15", "--lang", "both", "--max", "20"]) == 0
    assert "added subscriber #1" in capsys.readouterr().out
    assert main(["sub", "add", "--email", "alice@example.org", "--topic", "后训练",
                 "--threshold", "80"]) == 0
    assert "updated subscriber #1" in capsys.readouterr().out
    assert main(["sub", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 1
    row = listed[0]
    assert (row["address"], row["tz"], row["send_at"], row["lang"], row["max_papers"]) == (
        "alice@example.org", "Europe/Berlin", "07:15", "both", 20)
    assert row["topics"] == [{"topic": "post-training", "threshold": 80}]
    assert "token" not in row
    assert main(["sub", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice@example.org" in out and "post-training ≥80" in out
    assert subscribers.get(store, 1).token not in out
    assert main(["sub", "rm", "1"]) == 0
    assert main(["sub", "rm", "1"]) == 2
    assert "no subscriber #1" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--email", "nope@", "--topic", "后训练"], "invalid email address"),
    (["--email", "a@example.org", "--topic", "后训练", "--threshold", "abc"],
     "threshold must be a whole number 0–100: 'abc'"),
    (["--email", "a@example.org", "--topic", "后训练", "--threshold", "200"], "0–100: '200'"),
    (["--email", "a@example.org", "--topic", "后训练", "--tz", "Mars/Base"], "Mars/Base"),
    (["--email", "a@example.org", "--topic", "后训练", "--at", "25:00"], "25:00"),
    (["--email", "a@example.org", "--topic", "后训练", "--topic", "quantum basket weaving"],
     "unknown topic 'quantum basket weaving'"),
    (["--telegram", "not a chat", "--topic", "后训练"], "Telegram chat id"),
    (["--email", "a@example.org", "--topic", "后训练", "--slack-webhook", "https://x"],
     "--slack-webhook needs --slack"),
    # A custom topic that is too long fails after validation: its write must roll back too.
    (["--email", "a@example.org", "--topic", "后训练", "--custom", "--topic", "x" * 500],
     "at most"),
])
def test_cli_bad_arguments_change_nothing(store: Store, capsys, args: list[str], message: str) -> None:
    subscribers.add_or_update(store, channel="email", address="a@example.org",
                              topics=["agents"], threshold=50)
    before = table_counts(store)
    rows_before = list(store.db.query("select * from subscribers"))
    assert main(["sub", "add", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert table_counts(store) == before
    assert list(store.db.query("select * from subscribers")) == rows_before


def test_cli_unknown_topic_suggests_and_custom_creates(store: Store, capsys) -> None:
    assert main(["sub", "add", "--email", "a@example.org", "--topic", "后训"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" in err and "post-training" in err and "--custom" in err
    assert main(["sub", "add", "--email", "a@example.org", "--topic", "后训练",
                 "--custom", "--topic", "protein folding with diffusion"]) == 0
    sub = subscribers.by_address(store, "email", "a@example.org")
    slugs = [s.topic for s in subscribers.subscriptions(store, sub.id)]
    assert slugs[0] == "post-training" and slugs[1].startswith("custom-")
    assert store.db["custom_topics"].count == 1


@pytest.mark.parametrize("name", ["localtime", "Factory", "posixrules", "LOCALTIME"])
def test_tz_database_files_that_are_not_places_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        subscribers.validate_tz(name)


def test_cli_caps_custom_topics_per_reader(store: Store, capsys) -> None:
    cap = subscribers.MAX_CUSTOM_TOPICS
    args = ["sub", "add", "--email", "a@example.org", "--custom"]
    for i in range(cap):
        args += ["--topic", f"custom interest number {i}"]
    assert main(args) == 0
    before = table_counts(store)
    assert main(["sub", "add", "--email", "a@example.org", "--custom",
                 "--topic", "one custom interest too many"]) == 2
    err = capsys.readouterr().err
    assert f"最多 {cap} 个自定义主题" in err and f"at most {cap} custom topics" in err
    assert err.count("\n") == 1 and table_counts(store) == before
