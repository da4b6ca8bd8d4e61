import dataclasses
from pathlib import Path

import pytest

from digestbot.cli import main
from digestbot.config import KEYS, Secret, Settings, load_settings
from digestbot.errors import ConfigError


def test_defaults_match_design() -> None:
    s = load_settings({})
    assert s.db == "var/digestbot.db"
    assert s.outbox == "var/outbox"
    assert s.categories == ["cs.CL", "cs.AI", "cs.LG"]
    assert s.arxiv_rss_url == "https://rss.arxiv.org/rss/"
    assert s.arxiv_api_url == "https://export.arxiv.org/api/query"
    assert s.llm_json == "schema" and s.llm_concurrency == 8
    assert s.mail_from == "digestbot@localhost" and s.http_port == 8080
    assert not s.llm_enabled


def test_settings_has_one_typed_field_per_key_in_table_order() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(Settings)}
    assert list(fields) == [k.name for k in KEYS] + ["config_path"]
    assert fields["categories"] == list[str] and fields["http_port"] is int
    assert fields["secret"] == Secret | None and fields["public_url"] == str | None
    s = load_settings({})
    assert {k.name: getattr(s, k.name) for k in KEYS} == {k.name: k.default for k in KEYS}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.db = "elsewhere"  # type: ignore[misc]


def test_environment_wins_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('categories = ["cs.CV"]\nllm_concurrency = 4\n')
    s = load_settings({"DIGESTBOT_CONFIG": str(cfg), "DIGESTBOT_LLM_CONCURRENCY": "2"})
    assert s.categories == ["cs.CV"]
    assert s.llm_concurrency == 2


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('categoris = ["cs.CV"]\n')
    with pytest.raises(ConfigError, match="unknown key.*categoris"):
        load_settings({"DIGESTBOT_CONFIG": str(cfg)})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIGESTBOT_LLM_CONCURRENCY": "abc"}, "DIGESTBOT_LLM_CONCURRENCY: expected a whole number"),
        ({"DIGESTBOT_LLM_JSON": "yaml"}, "DIGESTBOT_LLM_JSON: expected one of schema, object, prompt"),
        ({"DIGESTBOT_SMTP_URL": "http://x"}, "DIGESTBOT_SMTP_URL: expected smtp://"),
        ({"DIGESTBOT_CATEGORIES": "cs.CL,Not A Cat"}, "not an arXiv category"),
        ({"DIGESTBOT_HTTP_PORT": "70000"}, "0–65535"),
        ({"DIGESTBOT_MAIL_FROM": "nobody"}, "expected an address"),
        # A line break would end the From header early and fail (or forge) every send.
        ({"DIGESTBOT_MAIL_FROM": "d@example.org\r\nBcc: all@example.org"}, "line breaks"),
        ({"DIGESTBOT_MAIL_FROM": "arXiv\n <d@example.org>"}, "line breaks"),
        # float() reads these; a delay that is never over (or NaN) is no delay.
        ({"DIGESTBOT_ARXIV_DELAY": "nan"}, "DIGESTBOT_ARXIV_DELAY: expected a number"),
        ({"DIGESTBOT_ARXIV_DELAY": "inf"}, "DIGESTBOT_ARXIV_DELAY: expected a number"),
        ({"DIGESTBOT_LLM_PRICE_INPUT": "-inf"}, "expected a number"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_secrets_never_show_in_repr() -> None:
    s = load_settings({"OPENAI_API_KEY": "sk-supersecret",
                       "DIGESTBOT_SMTP_URL": "smtp://u:hunter2@mail.example:587"})
    text = repr(s) + str(s.openai_api_key) + str(s.smtp_url)
    assert "sk-supersecret" not in text and "hunter2" not in text
    assert s.openai_api_key and s.openai_api_key.get() == "sk-supersecret"


def test_bad_config_value_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DIGESTBOT_LLM_CONCURRENCY", "abc")
    assert main(["stats"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DIGESTBOT_LLM_CONCURRENCY" in err


def test_init_writes_commented_config_that_loads(isolated_env: Path, capsys) -> None:
    assert main(["init"]) == 0
    text = (isolated_env / "digestbot.toml").read_text()
    assert "DIGESTBOT_SMTP_URL" in text and "OPENAI_API_KEY" in text
    s = load_settings({"DIGESTBOT_CONFIG": str(isolated_env / "digestbot.toml")})
    assert s.secret and len(s.secret.get()) >= 32
    assert Path(s.db).exists() or (isolated_env / "var" / "digestbot.db").exists()
    # It holds the secret: created 0600 (not chmod'ed after the secret was written).
    assert (isolated_env / "digestbot.toml").stat().st_mode & 0o777 == 0o600
    # a second init keeps the file (and its secret)
    assert main(["init"]) == 0
    assert (isolated_env / "digestbot.toml").read_text() == text


def test_bad_usage_exits_2(capsys) -> None:
    assert main([]) == 2
    assert main(["sub"]) == 2
    assert main(["fetch", "--date", "yesterday"]) == 2


def test_misspelled_environment_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings({"DIGESTBOT_SMPT_URL": "smtp://x:1", "DIGESTBOT_DB": "a.db"})
    assert s.smtp_url is None and s.db == "a.db"
    assert "DIGESTBOT_SMPT_URL" in caplog.text and "DIGESTBOT_DB" not in caplog.text


@pytest.mark.parametrize("value", ["digestbot@example.org", "arXiv 每日速递 <digest@example.org>",
                                   '"arXiv Digest" <d@example.org>'])
def test_mail_from_accepts_display_names(value: str) -> None:
    assert load_settings({"DIGESTBOT_MAIL_FROM": value}).mail_from == value


@pytest.mark.parametrize("value", ["nobody", "a b@c", "Name <nobody>", "<>"])
def test_mail_from_rejects_non_addresses(value: str) -> None:
    with pytest.raises(ConfigError, match="DIGESTBOT_MAIL_FROM"):
        load_settings({"DIGESTBOT_MAIL_FROM": value})


def test_init_creates_the_config_0600_even_under_a_lax_umask(isolated_env: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    created: list[int] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The config is written to a temp file beside it, then renamed: 0600 from creation.
        if "digestbot.toml" in str(path) and flags & os.O_CREAT:
            created.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)
    try:
        assert main(["init"]) == 0
    finally:
        os.umask(old)
    assert created == [0o600]
    assert (isolated_env / "digestbot.toml").stat().st_mode & 0o777 == 0o600
