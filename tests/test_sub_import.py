"""`digestbot sub import` / `sub export`: real files, all or nothing, the round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from digestbot import subscribers
from digestbot.cli import main
from digestbot.store import Store

HEADER = "channel,address,topics,threshold,zone,time,lang\n"


def _count(db: Path) -> tuple[int, int]:
    with Store(db) as store:
        return (store.db["subscribers"].count, store.db["subscriptions"].count)


def _rows(n: int) -> list[str]:
    channels = [("email", "reader{}@example.org"), ("telegram", "{}"), ("slack", "C{:06d}")]
    out = []
    for i in range(n):
        channel, pattern = channels[i % 3]
        out.append(f"{channel},{pattern.format(i + 100)},后训练;long-context,{50 + i % 40},"
                   f"Europe/Berlin,{i % 24}:30,en")
    return out


def test_csv_import_adds_and_updates_like_sub_add(tmp_path: Path, settings, capsys) -> None:
    assert main(["sub", "add", "--email", "alice@example.org", "--topic", "长上下文",
                 "--threshold", "90", "--tz", "Asia/Tokyo"]) == 0
    f = tmp_path / "readers.csv"
    f.write_text(HEADER + "email,Alice@Example.ORG,后训练,70,,7:15,both\n"
                 "telegram,-100123,post-training|long-context,,,,\n"
                 "slack,C0123456,后训练,,,,\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 0
    assert "3 rows: 2 added, 1 updated, 4 subscriptions" in capsys.readouterr().out
    with Store(settings.db) as store:
        alice = subscribers.by_address(store, "email", "alice@example.org")
        assert alice is not None and alice.status == "active"
        # Settings the row gives replace, the others stay; old subscriptions stay.
        assert (alice.tz, alice.send_at, alice.lang) == ("Asia/Tokyo", "07:15", "both")
        assert [(s.topic, s.threshold) for s in subscribers.subscriptions(store, alice.id)] == [
            ("long-context", 90), ("post-training", 70)]
        tg = subscribers.by_address(store, "telegram", "-100123")
        assert tg is not None and (tg.tz, tg.send_at, tg.lang, tg.max_papers) == (
            "Asia/Shanghai", "08:30", "zh", 50)
        assert {s.threshold for s in subscribers.subscriptions(store, tg.id)} == {60}
        assert len({s.token for s in subscribers.list_all(store)}) == 3


def test_every_bad_row_is_reported_and_nothing_imported(tmp_path: Path, settings, capsys) -> None:
    f = tmp_path / "readers.csv"
    f.write_text(HEADER + "email,ok@example.org,后训练,,,,\n"
                 "email,not-an-address,后训练,,,,\n"
                 "telegram,123,no-such-topic-at-all,,,,\n"
                 "fax,123,后训练,,,,\n"
                 "slack,C0123456,后训练,101,Mars/Base,25:00,klingon\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":")[0] for e in err[:4]] == [
        "第 3 行 / line 3", "第 4 行 / line 4", "第 5 行 / line 5", "第 6 行 / line 6"]
    assert "邮箱地址无效" in err[0] and "unknown topic" in err[1] and "unknown channel" in err[2]
    for words in ("threshold", "time zone", "HH:MM", "language"):
        assert words in err[3]
    assert "4 bad row(s), nothing imported" in err[-1]
    assert _count(settings.db) == (0, 0)


def test_ten_thousand_rows_with_one_bad_in_the_middle(tmp_path: Path, settings, capsys) -> None:
    rows = _rows(10_000)
    rows[5000] = "email,broken@@example.org,后训练,60,,,\n".strip()
    f = tmp_path / "big.csv"
    f.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("第 5002 行 / line 5002: 邮箱地址无效")
    assert _count(settings.db) == (0, 0)
    rows[5000] = "email,fixed@example.org,后训练,60,,,"
    f.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 0
    assert _count(settings.db) == (10_000, 19_999)


def test_bom_and_crlf(tmp_path: Path, settings) -> None:
    f = tmp_path / "excel.csv"
    f.write_bytes(("\ufeff" + HEADER + 'email,a@example.org,"后训练; long-context",,,,\n'
                   "email,b@example.org,后训练,,,,\n").replace("\n", "\r\n").encode("utf-8"))
    assert main(["sub", "import", str(f)]) == 0
    with Store(settings.db) as store:
        a = subscribers.by_address(store, "email", "a@example.org")
        assert a is not None and len(subscribers.subscriptions(store, a.id)) == 2
        assert subscribers.by_address(store, "email", "b@example.org") is not None


def test_not_utf8_names_the_line(tmp_path: Path, settings, capsys) -> None:
    f = tmp_path / "gbk.csv"
    f.write_bytes(HEADER.encode() + "email,a@example.org,后训练,,,,\n".encode("gbk"))
    assert main(["sub", "import", str(f)]) == 2
    assert "line 2: 不是 UTF-8 文本，请另存为 UTF-8 / not UTF-8 text" in capsys.readouterr().err
    assert _count(settings.db) == (0, 0)


def test_jsonl_from_stdin(settings, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    lines = [json.dumps({"channel": "email", "address": "j@example.org", "topics": ["后训练"],
                         "threshold": 75, "tz": "America/New_York", "send_at": "6:00"}),
             "",
             json.dumps({"channel": "telegram", "address": "42", "topics": "后训练|长上下文"}),
             "{not json",
             json.dumps(["a", "list"]),
             json.dumps({"channel": "telegram", "address": "43", "colour": "red"})]
    data = ("\n".join(lines) + "\n").encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["sub", "import", "-"]) == 2
    err = capsys.readouterr().err
    assert "line 4: JSON 无效 / invalid JSON" in err and "(of 5 rows)" in err and "line 5:" in err and "'colour'" in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        ("\n".join(lines[:3]) + "\n").encode())))
    assert main(["sub", "import", "-"]) == 0
    with Store(settings.db) as store:
        j = subscribers.by_address(store, "email", "j@example.org")
        assert j is not None and (j.tz, j.send_at) == ("America/New_York", "06:00")
        assert subscribers.subscriptions(store, j.id)[0].threshold == 75


def test_unknown_column_and_custom_topics(tmp_path: Path, settings, capsys) -> None:
    f = tmp_path / "r.csv"
    f.write_text("channel,address,topicz\nemail,a@example.org,x\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 2
    assert "unknown column(s) 'topicz'" in capsys.readouterr().err
    f.write_text(HEADER + "email,a@example.org,diffusion for proteins,,,,\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 2
    assert main(["sub", "import", "--custom", str(f)]) == 0
    with Store(settings.db) as store:
        a = subscribers.by_address(store, "email", "a@example.org")
        assert a is not None
        assert subscribers.subscriptions(store, a.id)[0].topic.startswith("custom-")


def test_a_bad_file_leaves_no_custom_topic_behind(tmp_path: Path, settings) -> None:
    f = tmp_path / "r.csv"
    f.write_text(HEADER + "email,a@example.org,diffusion for proteins,,,,\n"
                 "email,bad,后训练,,,,\n", encoding="utf-8")
    assert main(["sub", "import", "--custom", str(f)]) == 2
    with Store(settings.db) as store:
        assert store.db["custom_topics"].count == 0


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_round_trip(tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch, name: str,
                    capsys) -> None:
    assert main(["sub", "add", "--email", "a@example.org", "--topic", "后训练", "--topic",
                 "长上下文", "--threshold", "70", "--tz", "Europe/Paris", "--lang", "en"]) == 0
    assert main(["sub", "add", "--email", "a@example.org", "--topic", "扩散模型",
                 "--threshold", "55", "--max", "12"]) == 0
    assert main(["sub", "add", "--slack", "C0123456", "--slack-webhook",
                 "https://hooks.slack.com/services/T0/B0/SECRETSECRET", "--topic", "后训练"]) == 0
    assert main(["sub", "add", "--telegram", "77", "--custom", "--topic",
                 "protein folding with language models"]) == 0
    assert main(["sub", "add", "--telegram", "78", "--topic", "后训练"]) == 0
    assert main(["sub", "add", "--telegram", "79", "--topic", "后训练", "--weekly"]) == 0
    with Store(settings.db) as store:
        subscribers.set_status(store, 4, "unsubscribed")
        token = subscribers.get(store, 1).token  # type: ignore[union-attr]
    first = tmp_path / name
    assert main(["sub", "export", str(first)]) == 0
    text = first.read_text(encoding="utf-8")
    assert "SECRETSECRET" not in text and "hooks.slack.com" not in text and token not in text
    assert "78" not in text  # an unsubscribed reader is not signed up again elsewhere
    assert "weekly" in text  # the cadence travels with the reader
    monkeypatch.setenv("DIGESTBOT_DB", str(tmp_path / "fresh.db"))
    assert main(["sub", "import", "--custom", str(first)]) == 0
    second = tmp_path / ("again." + name.split(".")[1])
    assert main(["sub", "export", str(second)]) == 0
    assert second.read_text(encoding="utf-8") == text
    capsys.readouterr()
    assert main(["sub", "export"] + (["--format", "jsonl"] if name.endswith("jsonl") else [])) == 0
    assert capsys.readouterr().out == text


def test_export_help_says_no_secrets(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sub", "export", "--help"])
    out = capsys.readouterr().out
    assert "webhook" in out and "never exported" in out


def test_a_reader_who_left_comes_back_with_a_new_token(tmp_path: Path, settings) -> None:
    """As `sub add` does: importing an address that unsubscribed makes it active again, and
    the old unsubscribe links are dead (a new token)."""
    assert main(["sub", "add", "--email", "a@example.org", "--topic", "后训练"]) == 0
    with Store(settings.db) as store:
        subscribers.set_status(store, 1, "unsubscribed", "clicked")
        old = subscribers.get(store, 1)
    f = tmp_path / "r.csv"
    f.write_text(HEADER + "email,a@example.org,长上下文,,,,\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 0
    with Store(settings.db) as store:
        now = subscribers.get(store, 1)
    assert old is not None and now is not None
    assert (now.status, now.status_reason) == ("active", None) and now.token != old.token


def test_too_many_custom_topics_is_a_bad_row(tmp_path: Path, settings, capsys) -> None:
    names = ";".join(f"custom words number {i}" for i in range(subscribers.MAX_CUSTOM_TOPICS + 1))
    f = tmp_path / "r.csv"
    f.write_text(HEADER + "email,ok@example.org,后训练,,,,\n"
                 f"email,a@example.org,{names},,,,\n", encoding="utf-8")
    assert main(["sub", "import", "--custom", str(f)]) == 2
    assert "line 3: 每位读者最多" in capsys.readouterr().err
    assert _count(settings.db) == (0, 0)
    with Store(settings.db) as store:
        assert store.db["custom_topics"].count == 0


def test_cadence_column(tmp_path: Path, settings, capsys) -> None:
    assert main(["sub", "add", "--telegram", "5", "--topic", "后训练", "--weekly"]) == 0
    f = tmp_path / "readers.csv"
    f.write_text("channel,address,topics,cadence\n"
                 "telegram,6,后训练,weekly\n"
                 "telegram,5,后训练,\n"  # left out: the stored weekly stays
                 "telegram,7,后训练,每周\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 0
    with Store(settings.db) as store:
        cadences = {s.address: s.cadence for s in subscribers.list_all(store)}
    assert cadences == {"5": "weekly", "6": "weekly", "7": "weekly"}
    f.write_text("channel,address,topics,cadence\ntelegram,8,后训练,hourly\n", encoding="utf-8")
    assert main(["sub", "import", str(f)]) == 2  # bad input: usage status, as other bad rows
    err = capsys.readouterr().err
    assert "line 2" in err and "daily or weekly" in err
