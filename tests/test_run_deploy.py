"""deploy/ stays true to the code: every setting documented, the example config loads."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from digestbot.config import KEYS, load_settings

DEPLOY = Path(__file__).parent.parent / "deploy"


def test_env_example_lists_every_variable() -> None:
    text = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    expected = {k.env for k in KEYS} | {"DIGESTBOT_CONFIG"}
    assert expected - named == set(), "deploy/.env.example lacks variables"
    assert named - expected == set(), "deploy/.env.example names variables the code does not read"


def test_env_example_sets_no_secret() -> None:
    text = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    secrets = [k.env for k in KEYS if k.parse.__name__ in ("_secret", "_smtp_url")]
    assert secrets
    assert not [s for s in secrets if re.search(rf"^{s}=", text, flags=re.M)]


def test_example_toml_loads_and_keeps_secrets_out() -> None:
    path = DEPLOY / "digestbot.example.toml"
    settings = load_settings({"DIGESTBOT_CONFIG": str(path)})
    assert settings.config_path == path
    assert settings.llm_json == "object" and settings.openai_base_url
    assert settings.openai_api_key is None and settings.secret is None and settings.smtp_url is None


def test_example_toml_names_every_key_and_sets_no_secret() -> None:
    text = (DEPLOY / "digestbot.example.toml").read_text(encoding="utf-8")
    secrets = {k.name for k in KEYS if k.parse.__name__ in ("_secret", "_smtp_url")}
    shown = set(re.findall(r"^#? ?([a-z][a-z0-9_]*) *=", text, flags=re.M))
    assert {k.name for k in KEYS} - secrets - shown == set(), "example toml lacks keys"
    assert shown & secrets == set()
    # Secrets are named (so nobody looks for them here), each with its environment variable.
    assert all(f"{k.name} ({k.env})" in " ".join(text.split()).replace("# ", "")
               for k in KEYS if k.name in secrets)


def test_systemd_unit_runs_the_service_as_a_dedicated_user() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "digestbot.service", encoding="utf-8")
    svc = unit["Service"]
    assert svc["Restart"] == "on-failure"
    assert svc["EnvironmentFile"].startswith("/etc/")
    assert svc["DynamicUser"] == "yes" and svc["StateDirectory"] == "digestbot"
    assert svc["WorkingDirectory"] == "/var/lib/digestbot"
    assert svc["ExecStart"].split()[-1] == "run"
    assert int(svc["TimeoutStopSec"]) > 10  # run exits within 10 s of SIGTERM
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_dockerfile_is_slim_non_root_and_checks_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.M)
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "pip install --no-deps --no-build-isolation ." in text  # after the lock: test_lock
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, flags=re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, flags=re.M)
    assert cmd and '"digestbot"' in cmd.group(1) and '"run"' in cmd.group(1)


def test_compose_keeps_the_database_in_a_volume() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert "dockerfile: deploy/Dockerfile" in text
    assert re.search(r"^\s+- digestbot-data:/data$", text, flags=re.M)
    assert re.search(r"^volumes:\n  digestbot-data:", text, flags=re.M)
    assert "DIGESTBOT_DB: /data/" in text
