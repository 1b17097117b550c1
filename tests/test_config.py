"""Configuration: file + environment, validated with errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sencity.config import ConfigError, load_settings, setting_keys
from tests.conftest import clean_env


def test_defaults_are_the_embedded_store() -> None:
    s = load_settings(None, environ={})
    assert s.server.port == 8080
    assert s.store_url.startswith("sqlite:///")
    assert s.store_url.endswith("sencity-data/sencity.db")
    assert s.bus_backend == "memory"
    assert s.auth.anonymous.role == ""


def test_environment_beats_file_and_overrides_beat_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "sencity.toml"
    cfg.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[log]\nformat = "json"\n')
    env = {"SENCITY_SERVER__PORT": "9100", "SENCITY_AUTH__ANONYMOUS__TENANTS": "danang,hue"}
    s = load_settings(cfg, environ=env)
    assert (s.server.port, s.server.host, s.log.format) == (9100, "0.0.0.0", "json")
    assert s.auth.anonymous.tenants == ["danang", "hue"]
    s = load_settings(cfg, {"server": {"port": 9200}}, environ=env)
    assert s.server.port == 9200


def test_yaml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "sencity.yaml"
    cfg.write_text("store:\n  url: postgresql://u@db:5432/city\nbus:\n  backend: auto\n")
    s = load_settings(cfg, environ={})
    assert s.is_postgresql and s.bus_backend == "postgresql"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nprot = 1\n", "unknown setting 'server.prot' (did you mean 'server.port'?)"),
        ('[server]\nport = "eighty"\n', "setting 'server.port': Input should be a valid integer"),
        ("[server]\nport = 70000\n", "setting 'server.port': Input should be less than"),
        ('[log]\nformat = "xml"\n', "setting 'log.format': Input should be 'plain' or 'json'"),
        ('[store]\nurl = "mysql://x"\n', "setting 'store.url': Value error, must start with"),
        ("[server\nport = 1\n", "not valid toml"),
        ("[nonsense]\na = 1\n", "unknown setting 'nonsense'"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert str(err.value).startswith(f"{cfg}: ")
    assert expected in str(err.value)


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(
        ConfigError,
        match=r"SENCITY_SERVER__PROT: unknown setting \(did you mean "
        r"SENCITY_SERVER__PORT\?\)",
    ):
        load_settings(None, environ={"SENCITY_SERVER__PROT": "1"})
    with pytest.raises(
        ConfigError,
        match=r"environment variable SENCITY_SERVER__PORT: setting "
        r"'server.port'",
    ):
        load_settings(None, environ={"SENCITY_SERVER__PORT": "abc"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_every_key_is_listed() -> None:
    keys = setting_keys()
    assert "server.port" in keys and "auth.anonymous.role" in keys
    assert len(keys) == len(set(keys))


def _cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sencity", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        env={**clean_env(), **(env or {})},
        timeout=60,
        check=False,
    )


def test_config_check_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "sencity.toml"
    cfg.write_text("[server]\nprot = 8080\n")
    res = _cli(["--config", str(cfg), "config", "check"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: {cfg}: unknown setting 'server.prot' (did you mean 'server.port'?)"
    ]


def test_serve_with_unreachable_store_exits_with_one_line(tmp_path: Path) -> None:
    res = _cli(
        ["serve", "--store", "postgresql://sencity:secret@127.0.0.1:9/nowhere"],
        tmp_path,
        {"SENCITY_STORE__CONNECT_TIMEOUT": "1"},
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "unreachable" in lines[0] and "127.0.0.1:9" in lines[0]
    assert "secret" not in lines[0]  # the password is redacted


def test_config_check_ok(tmp_path: Path) -> None:
    res = _cli(["config", "check"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout
    assert (tmp_path / "sencity-data" / "sencity.db").exists()


def test_config_show_redacts_password(tmp_path: Path) -> None:
    res = _cli(
        ["config", "show"], tmp_path, {"SENCITY_STORE__URL": "postgresql://u:hunter2@db:5432/c"}
    )
    assert res.returncode == 0, res.stderr
    assert "hunter2" not in res.stdout and "u:***@db" in res.stdout
