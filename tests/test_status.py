"""`/status`, `digestbot status` and `/metrics`: what the evening did, public, with a stable
schema, parsed by prometheus-client's own parser, and never a reader's data or a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from digestbot import breaker as breakers
from digestbot import status
from digestbot.cli import main
from digestbot.config import Settings, load_settings
from digestbot.models import BreakerState
from digestbot.sources.papers import log_fetch
from digestbot.status.metrics import exposition
from digestbot.store import Store
from tests.fakes.digests import DAY, add_enrichment, add_paper, add_subscriber
from tests.fakes.site import serve_app

# DAY (Thu 2026-08-13) was announced Wed 2026-08-12 20:00 EDT = 2026-08-13 00:00 UTC.
ANNOUNCED = datetime(2026, 8, 13, 0, 0, tzinfo=UTC)
NOW = ANNOUNCED + timedelta(hours=3)
SMTP_PASSWORD = "hunter2-smtp-password"
BOT_TOKEN = "123456:telegram-bot-token-abcdef"
API_KEY = "sk-openai-test-key-123456"
ADDRESS = "ada.secret.reader@example.org"

SCHEMA = {
    "schema": None, "now": None,
    "last_announcement": {"date", "seen_at", "source", "papers", "total", "lag_s"},
    "expected": {"date", "announced_at", "state", "next"},
    "fetch": {"last_attempt_at", "last_status", "last_ok_at", "failing_since"},
    "evening": {"date", "fetched", "scored", "enriched", "first_digest", "last_digest"},
    "digests": None, "queue": {"pending", "failed"},
    "llm": {"since", "calls", "failures", "prompt_tokens", "completion_tokens",
            "cached_tokens", "cost_usd"},
    "breakers": None, "arxiv": {"breaker", "first_pages"},
}


@pytest.fixture
def secret_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DIGESTBOT_SMTP_URL", f"smtp://digest:{SMTP_PASSWORD}@127.0.0.1:2525")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return load_settings()


def evening(store: Store) -> int:
    """DAY fetched 4 minutes after the announcement, scored, enriched, one digest sent, one
    failed (its error text names a secret), an LLM call, an open SMTP breaker."""
    add_paper(store, "2608.00001", 90)
    add_paper(store, "2608.00002", 40)
    add_enrichment(store, "2608.00001", "摘要")
    log_fetch(store, "test", DAY, "ok", 2)
    store.db.execute("update fetch_log set at = ?", [(ANNOUNCED + timedelta(minutes=4)).isoformat()])
    log_fetch(store, "rss", None, "error", 0, f"refused for token={BOT_TOKEN}")
    ada = add_subscriber(store, ADDRESS)
    bob = add_subscriber(store, "bob@example.org")
    sent = (ANNOUNCED + timedelta(hours=1)).isoformat()
    for sub, state in ((ada, "sent"), (bob, "failed")):
        store.db["deliveries"].insert({
            "subscriber_id": sub.id, "digest_date": DAY, "status": state, "attempts": 1,
            "last_error": f"535 auth failed for {ADDRESS} {SMTP_PASSWORD}", "paper_ids": "[]",
            "sent_at": sent if state == "sent" else None, "created_at": sent,
            "updated_at": sent})
    store.db["llm_calls"].insert({
        "kind": "enrich", "arxiv_id": "2608.00001", "version": 1, "model": "m",
        "prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 500, "latency_ms": 5,
        "outcome": "ok", "error": "", "created_at": (ANNOUNCED + timedelta(minutes=10)).isoformat()})
    status.record_breakers(store, [
        BreakerState("SMTP", "closed", 0, None),
        BreakerState("SMTP", "open", 3, (ANNOUNCED + timedelta(hours=2)).isoformat())])
    return ada.id


def test_the_schema_is_stable_and_says_what_the_evening_did(store: Store, settings: Settings) -> None:
    evening(store)
    snap = status.snapshot(settings, store, NOW)
    assert set(snap) == set(SCHEMA)
    for key, fields in SCHEMA.items():
        if fields:
            assert set(snap[key]) == fields, key
    assert snap["schema"] == 1
    assert snap["last_announcement"] == {
        "date": DAY, "seen_at": "2026-08-13T00:04:00+00:00", "source": "test",
        "papers": {"new": 2}, "total": 2, "lag_s": 240}
    assert snap["expected"] == {
        "date": DAY, "announced_at": "2026-08-13T00:00:00+00:00", "state": "seen",
        "next": {"date": "2026-08-14", "at": "2026-08-14T00:00:00+00:00", "none_expected": None}}
    assert snap["fetch"]["last_status"] == "error" and snap["fetch"]["failing_since"]
    ev = snap["evening"]
    assert ev["date"] == DAY and ev["fetched"] == "2026-08-13T00:04:00+00:00"
    assert ev["scored"] and ev["enriched"]
    assert ev["first_digest"] == ev["last_digest"] == "2026-08-13T01:00:00+00:00"
    assert snap["digests"] == {"email": {"failed": 1, "sent": 1}}
    assert snap["queue"] == {"pending": 0, "failed": 1}
    llm = snap["llm"]
    assert (llm["calls"], llm["prompt_tokens"], llm["cached_tokens"]) == (1, 1000, 500)
    assert llm["cost_usd"] == round((500 * 0.40 + 500 * 0.10 + 200 * 1.60) / 1e6, 4)
    # The worst of the SMTP breakers, with since when.
    assert snap["breakers"] == [{"name": "SMTP", "state": "open", "failures": 3,
                                 "since": "2026-08-13T02:00:00+00:00"}]
    json.dumps(snap)  # all plain JSON


@pytest.mark.parametrize(("now", "state", "none_expected"), [
    (datetime(2026, 8, 13, 0, 30, tzinfo=UTC), "waiting", None),  # Wed 20:30 EDT, not yet
    (datetime(2026, 8, 13, 8, 0, tzinfo=UTC), "missed", "holiday"),  # Thu 04:00 EDT, none came
    (datetime(2026, 8, 15, 16, 0, tzinfo=UTC), "missed", "holiday"),
    (datetime(2026, 8, 14, 16, 0, tzinfo=UTC), "missed", "holiday"),
])
def test_expectation_without_the_batch(now: datetime, state: str, none_expected: str | None) -> None:
    got = status.expectation(now, "2026-08-12")
    assert (got["state"], got["next"]["none_expected"]) == (state, none_expected)


def test_a_weekend_expects_nothing_tonight() -> None:
    # Saturday noon EDT, Friday's batch (announced Thursday) seen: nothing until Sunday.
    got = status.expectation(datetime(2026, 8, 15, 16, 0, tzinfo=UTC), "2026-08-14")
    assert got["state"] == "seen"
    assert got["next"] == {"date": "2026-08-17", "at": "2026-08-17T00:00:00+00:00",
                           "none_expected": "weekend"}


def test_a_breaker_records_when_it_opened(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    monkeypatch.setattr(breakers, "_BREAKERS", {})
    smtp = breakers.breaker_for("SMTP mail.example.org:587")
    status.record_breakers(store, breakers.snapshots())
    assert status.snapshot(load_settings(), store, NOW)["breakers"] == []
    for _ in range(3):
        smtp.failed()
    status.record_breakers(store, breakers.snapshots())
    [shown] = status.snapshot(load_settings(), store, NOW)["breakers"]
    assert shown["name"] == "SMTP" and shown["state"] == "open" and shown["since"]
    assert "mail.example.org" not in json.dumps(shown)
    smtp.succeeded()
    status.record_breakers(store, breakers.snapshots())
    assert status.snapshot(load_settings(), store, NOW)["breakers"] == []


@pytest.fixture
async def client(secret_settings: Settings):
    async with serve_app(secret_settings) as http:
        yield http


def assert_no_secret(text: str, store: Store, sub_id: int) -> None:
    token = next(iter(store.db.query("select token from subscribers where id = ?", [sub_id])))
    for secret in (SMTP_PASSWORD, BOT_TOKEN, API_KEY, ADDRESS, "bob@example.org",
                   token["token"], "535 auth", "refused for"):
        assert secret not in text


async def test_the_endpoints_are_public_and_carry_no_secret(client, secret_settings: Settings) -> None:
    with Store(secret_settings.db) as store:
        sub_id = evening(store)
        as_json = await client.get("/status", headers={"Accept": "application/json"})
        assert as_json.status_code == 200
        assert set(as_json.json()) == set(SCHEMA)
        html = await client.get("/status", headers={"Accept": "text/html,application/json"})
        assert html.headers["Content-Type"].startswith("text/html")
        assert "运行状态" in html.text and "Status" in html.text and DAY in html.text
        assert "SMTP" in html.text and "open" in html.text
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        for text in (as_json.text, html.text, metrics.text):
            assert_no_secret(text, store, sub_id)


def test_metrics_parse_with_prometheus_clients_own_parser(store: Store, settings: Settings) -> None:
    evening(store)
    text = exposition(settings, store, NOW).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in families.values() for s in f.samples}
    assert value[("digestbot_announcement_lag_seconds", ())] == 240
    assert value[("digestbot_announcement_seen", ())] == 1
    assert value[("digestbot_announcement_expected_timestamp_seconds", ())] == ANNOUNCED.timestamp()
    assert value[("digestbot_papers", ())] == 2
    assert value[("digestbot_llm_requests_total", ())] == 1
    assert value[("digestbot_llm_failures_total", ())] == 0
    assert value[("digestbot_llm_tokens_total", (("kind", "prompt"),))] == 1000
    assert value[("digestbot_digests", (("channel", "email"), ("status", "failed")))] == 1
    assert value[("digestbot_queue_depth", (("status", "failed"),))] == 1
    assert value[("digestbot_breaker_state", (("breaker", "SMTP"), ("state", "open")))] == 1
    assert value[("digestbot_breaker_state", (("breaker", "SMTP"), ("state", "closed")))] == 0
    assert ("digestbot_last_successful_fetch_timestamp_seconds", ()) in value
    assert families["digestbot_llm_requests"].type == "counter"


def test_metrics_of_an_empty_database_leave_unknown_times_out(store: Store, settings: Settings) -> None:
    names = {f.name for f in text_string_to_metric_families(
        exposition(settings, store, NOW).decode())}
    assert "digestbot_last_successful_fetch_timestamp_seconds" not in names
    assert {"digestbot_papers", "digestbot_queue_depth", "digestbot_announcement_seen"} <= names


def test_the_cli_prints_the_same_status(secret_settings: Settings, capsys) -> None:
    with Store(secret_settings.db) as store:
        sub_id = evening(store)
        assert main(["status", "--json"]) == 0
        printed = capsys.readouterr().out
        assert set(json.loads(printed)) == set(SCHEMA)
        assert main(["status"]) == 0
        text = capsys.readouterr().out
        assert f"last announcement  {DAY}: 2 papers (new 2)" in text
        assert "SMTP open since 2026-08-13T02:00:00+00:00" in text
        for out in (printed, text):
            assert_no_secret(out, store, sub_id)
