"""teamindex.config: one option table for flags, TEAMINDEX_* variables and defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from teamindex.config import (
    OPTIONS,
    Settings,
    _parse_bool,
    _parse_list,
    _parse_size,
    load_settings,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1073741824", 1 << 30),
        ("0", 0),
        ("512", 512),
        ("1K", 1 << 10),
        ("1k", 1 << 10),
        ("512M", 512 << 20),
        ("512MB", 512 << 20),
        ("512MiB", 512 << 20),
        ("1G", 1 << 30),
        ("1GB", 1 << 30),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        (" 200M ", 200 << 20),
    ],
)
def test_parse_size(text, expected):
    assert _parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "lots", "1X", "1.5"])
def test_parse_size_invalid(text):
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is the contract
        _parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_parse_bool(text, expected):
    assert _parse_bool(text) is expected


@pytest.mark.parametrize("text", ["2", "maybe", "enabled"])
def test_parse_bool_invalid(text):
    with pytest.raises(ValueError, match="not a boolean"):
        _parse_bool(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("10.0.0.1", ("10.0.0.1",)),
        ("10.0.0.1, 10.0.0.2,,", ("10.0.0.1", "10.0.0.2")),
        (" a ,b ", ("a", "b")),
    ],
)
def test_parse_list(text, expected):
    assert _parse_list(text) == expected


def test_defaults_without_flags_or_env():
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert settings.data_dir == Path("data")
    assert settings.port == 8080
    assert settings.max_upload_size == 1 << 30
    assert settings.anonymous_read is False
    assert set(settings.sources.values()) == {"default"}


def test_env_then_flag_precedence():
    environ = {
        "TEAMINDEX_PORT": "9000",
        "TEAMINDEX_HOST": "0.0.0.0",
        "TEAMINDEX_MAX_UPLOAD_SIZE": "200M",
        "TEAMINDEX_ANONYMOUS_READ": "yes",
        "TEAMINDEX_TRUSTED_PROXY": "10.0.0.1",
        "TEAMINDEX_DATA_DIR": "/srv/index",
        "UNRELATED": "x",
    }
    settings = load_settings({"port": 7000, "host": None}, environ=environ)
    assert settings.port == 7000  # flag beats env
    assert settings.host == "0.0.0.0"
    assert settings.max_upload_size == 200 << 20
    assert settings.anonymous_read is True
    assert settings.trusted_proxy == "10.0.0.1"
    assert settings.data_dir == Path("/srv/index")
    assert settings.threads == 4
    assert settings.sources["port"] == "flag --port"
    assert settings.sources["host"] == "env TEAMINDEX_HOST"
    assert settings.sources["max_upload_size"] == "env TEAMINDEX_MAX_UPLOAD_SIZE"
    assert settings.sources["threads"] == "default"


def test_sources_do_not_affect_equality():
    assert load_settings({"port": 8080}, environ={}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMINDEX_PORT", "eighty"),
        ("TEAMINDEX_ANONYMOUS_READ", "perhaps"),
        ("TEAMINDEX_MAX_UPLOAD_SIZE", "big"),
        ("TEAMINDEX_AUTH_CACHE_SECONDS", "1.5"),
    ],
)
def test_bad_env_value_names_the_variable(variable, value):
    with pytest.raises(ValueError, match=f"^{variable}: "):
        load_settings({}, environ={variable: value})


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_paths_derive_from_data_dir():
    settings = Settings(data_dir=Path("/srv/ti"))
    assert settings.db_path == Path("/srv/ti/teamindex.sqlite3")
    assert settings.packages_dir == Path("/srv/ti/packages")
    assert settings.tmp_dir == Path("/srv/ti/tmp")


def test_every_setting_has_exactly_one_documented_option():
    names = [option.name for option in OPTIONS]
    assert len(names) == len(set(names))
    setting_fields = {f.name for f in dataclasses.fields(Settings) if f.name != "sources"}
    assert set(names) == setting_fields
    for option in OPTIONS:
        assert option.help.strip(), f"{option.name} has no help text"


@pytest.mark.parametrize(
    ("name", "env", "flag"),
    [
        ("data_dir", "TEAMINDEX_DATA_DIR", "--data-dir"),
        ("max_upload_size", "TEAMINDEX_MAX_UPLOAD_SIZE", "--max-upload-size"),
        ("anonymous_read", "TEAMINDEX_ANONYMOUS_READ", "--anonymous-read"),
    ],
)
def test_option_names(name, env, flag):
    option = next(option for option in OPTIONS if option.name == name)
    assert (option.env, option.flag) == (env, flag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("anyone", "anyone"),
        (" Admins ", "admins"),
        ("prefix:acme-", "prefix:acme-"),
        ("prefix:Acme_,team.", "prefix:acme-,team-"),  # compared as normalized names
        ("prefix: acme- , team- ", "prefix:acme-,team-"),
    ],
)
def test_new_projects_policy_parses(text, expected):
    settings = load_settings({}, environ={"TEAMINDEX_NEW_PROJECTS": text})
    assert settings.new_projects == expected


@pytest.mark.parametrize("text", ["everyone", "prefix:", "prefix:,", "prefix:acme/", "owners"])
def test_new_projects_policy_refuses_nonsense(text):
    with pytest.raises(ValueError, match="TEAMINDEX_NEW_PROJECTS"):
        load_settings({}, environ={"TEAMINDEX_NEW_PROJECTS": text})


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("", Path("/srv/ti/teamindex.sqlite3")),
        ("sqlite:///elsewhere/ti.sqlite3", Path("elsewhere/ti.sqlite3")),
        ("sqlite:////var/lib/ti.sqlite3", Path("/var/lib/ti.sqlite3")),
        ("postgresql://ti:secret@db.internal/ti", "postgresql://ti:secret@db.internal/ti"),
        ("postgres:///ti?host=/run/postgresql", "postgres:///ti?host=/run/postgresql"),
    ],
)
def test_database_url_picks_the_engine(url, database):
    settings = load_settings({}, {"TEAMINDEX_DATA_DIR": "/srv/ti", "TEAMINDEX_DATABASE_URL": url})
    assert settings.database == database


@pytest.mark.parametrize(
    "url", ["mysql://ti:secret@db/ti", "sqlite://", "sqlite:///", "ti.sqlite3", "http://x/"]
)
def test_database_url_refuses_other_schemes_without_showing_the_password(url):
    with pytest.raises(ValueError, match="TEAMINDEX_DATABASE_URL") as caught:
        load_settings({}, {"TEAMINDEX_DATABASE_URL": url})
    assert "secret" not in str(caught.value)


def test_config_shows_the_database_password_as_stars(capsys, monkeypatch):
    from teamindex.cli import main

    monkeypatch.setenv("TEAMINDEX_DATABASE_URL", "postgresql://ti:secret@db.internal/ti")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "database_url = postgresql://ti:****@db.internal/ti  # env TEAMINDEX_DATABASE_URL" in out
    assert "ti:secret@" not in out
