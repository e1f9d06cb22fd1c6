"""The `teamindex` command line: user commands, import, and --help text for every command."""

from __future__ import annotations

import argparse
import io
import os
import sys

import pytest
from builders import make_sdist, make_wheel
from conftest import FAST_HASH, basic
from uploading import stored_files, temp_files, upload

from teamindex import cli
from teamindex.cli.base import COMMANDS

JSON = "application/vnd.pypi.simple.v1+json"
NEW_PASSWORD = "battery-staple-42"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Only this test's TEAMINDEX_* settings, and cheap password hashing."""
    for name in list(os.environ):
        if name.startswith("TEAMINDEX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEAMINDEX_PASSWORD_HASH", FAST_HASH)


@pytest.fixture
def run(settings, capsys, monkeypatch):
    """Run `teamindex ARGS --data-dir <the app's data dir>`; returns (exit, stdout, stderr)."""

    def runner(*args: str, stdin: str | None = None, data_dir: bool = True):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin if stdin is not None else ""))
        argv = [*args, "--data-dir", str(settings.data_dir)] if data_dir else list(args)
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return runner


def status(client, user: str, password: str) -> int:
    return client.get("/simple/", headers={**basic(user, password), "Accept": JSON}).status_code


# -- users -------------------------------------------------------------------------------------


def test_adduser_with_password_stdin(app, client, run):
    code, out, err = run("adduser", "carol", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert (code, out, err) == (0, "created user carol\n", "")
    assert status(client, "carol", NEW_PASSWORD) == 200
    assert status(client, "carol", NEW_PASSWORD + "x") == 401


def test_adduser_admin_and_users_listing(app, run):
    assert run("adduser", "dave", "--admin", "--password-stdin", stdin=NEW_PASSWORD)[:2] == (
        0,
        "created admin dave\n",
    )
    code, out, err = run("users")
    assert (code, err) == (0, "")
    assert out == "alice\nbob\ndave  (admin)\nroot  (admin)\n"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("adduser", "alice"), NEW_PASSWORD, "user 'alice' already exists"),
        (("adduser", "ALICE"), NEW_PASSWORD, "user 'ALICE' already exists"),
        (
            ("adduser", "a b"),
            NEW_PASSWORD,
            "user name may contain only letters, digits and . _ - @",
        ),
        (("adduser", "__token__"), NEW_PASSWORD, "'__token__' is reserved for API tokens"),
        (("adduser", "carol"), "short", "password must be at least 8 characters"),
        (("adduser", "carol"), "", "password must be at least 8 characters"),
        (("passwd", "zed"), NEW_PASSWORD, "no user 'zed'"),
        (("passwd", "alice"), "short", "password must be at least 8 characters"),
        (("deluser", "zed"), None, "no user 'zed'"),
    ],
)
def test_user_command_errors_are_one_line(app, client, run, args, stdin, message):
    argv = [*args, "--password-stdin"] if stdin is not None else list(args)
    code, out, err = run(*argv, stdin=stdin)
    assert code == 1
    assert out == ""
    assert err == f"teamindex: error: {message}\n"
    # Nothing changed.
    assert run("users")[1] == "alice\nbob\nroot  (admin)\n"
    assert status(client, "alice", "correct-horse") == 200


def test_adduser_without_terminal_or_password_stdin(app, run):
    code, out, err = run("adduser", "carol", stdin=NEW_PASSWORD)
    assert (code, out) == (1, "")
    assert err == "teamindex: error: no terminal to ask for a password; use --password-stdin\n"
    assert "carol" not in run("users")[1]


def test_passwd_takes_effect_at_once_even_for_cached_logins(app, client, run):
    assert status(client, "alice", "correct-horse") == 200  # now in the credential cache
    assert status(client, "alice", "correct-horse") == 200
    code, out, err = run("passwd", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert (code, out, err) == (0, "password changed for alice\n", "")
    assert status(client, "alice", "correct-horse") == 401
    assert status(client, "alice", NEW_PASSWORD) == 200
    assert status(client, "bob", "correct-horse") == 200


def test_deluser_keeps_uploads(app, client, run, tmp_path):
    assert upload(client, make_wheel(tmp_path, "bobs-lib", "1.0"), "bob").status == "200 OK"
    assert status(client, "bob", "correct-horse") == 200
    assert run("deluser", "bob")[:3] == (0, "deleted user bob\n", "")
    assert status(client, "bob", "correct-horse") == 401
    assert run("users")[1] == "alice\nroot  (admin)\n"
    page = client.get("/simple/bobs-lib/", headers={**basic("alice"), "Accept": JSON})
    assert [f["filename"] for f in page.json["files"]] == ["bobs_lib-1.0-py3-none-any.whl"]


def test_missing_data_dir_is_an_error(run, tmp_path):
    missing = tmp_path / "nowhere"
    code, out, err = run("users", "--data-dir", str(missing), data_dir=False)
    assert (code, out) == (1, "")
    assert err.startswith(f"teamindex: error: data dir {missing} does not exist")
    assert len(err.splitlines()) == 1
    assert not missing.exists()


def test_data_dir_from_environment(app, run, settings, monkeypatch):
    monkeypatch.setenv("TEAMINDEX_DATA_DIR", str(settings.data_dir))
    code, out, _err = run("users", data_dir=False)
    assert (code, out) == (0, "alice\nbob\nroot  (admin)\n")


# -- import ------------------------------------------------------------------------------------


def test_import_directory(app, client, run, settings, tmp_path):
    source = tmp_path / "pypiserver" / "packages"
    (source / "nested").mkdir(parents=True)
    make_wheel(source, "alpha", "1.0")
    make_sdist(source, "alpha", "1.0")
    make_wheel(source / "nested", "beta", "2.0")
    (source / "README.txt").write_text("not a distribution")
    broken = source / "gamma-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")

    code, out, err = run("import", str(source), "--quiet")
    assert code == 1
    assert out.splitlines() == [
        f"  skipped {source / 'README.txt'}: not a distribution (expected .whl, .tar.gz or .zip)",
        f"  rejected {broken}: Invalid distribution file. File is not a zipfile: "
        "File is not a zip file",
        "imported 3, identical 0, skipped 1 (1 other), rejected 1",
    ]
    assert err == ""
    assert stored_files(settings.data_dir) == [
        "alpha/alpha-1.0-py3-none-any.whl",
        "alpha/alpha-1.0-py3-none-any.whl.metadata",
        "alpha/alpha-1.0.tar.gz",
        "beta/beta-2.0-py3-none-any.whl",
        "beta/beta-2.0-py3-none-any.whl.metadata",
    ]
    assert temp_files(settings.data_dir) == []
    # The running app sees the imported files.
    page = client.get("/simple/alpha/", headers={**basic("alice"), "Accept": JSON}).json
    assert sorted(f["filename"] for f in page["files"]) == [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.0.tar.gz",
    ]

    # Again: everything present is skipped, the broken file is still rejected.
    code, out, _err = run("import", str(source), "--quiet")
    assert code == 1
    assert out.splitlines()[-1] == "imported 0, identical 3, skipped 1 (1 other), rejected 1"

    # Without the broken file: exit 0 (a skipped file is reported, not an error).
    broken.unlink()
    code, out, _err = run("import", str(source), "--quiet")
    assert code == 0
    assert out.splitlines()[-1] == "imported 0, identical 3, skipped 1 (1 other), rejected 0"


def test_import_of_a_missing_directory_is_an_error(app, run, tmp_path):
    code, out, err = run("import", str(tmp_path / "packges"), "--quiet")
    assert (code, out) == (1, "")
    assert err == f"teamindex: error: no such file or directory: {tmp_path / 'packges'}\n"


def test_import_keep_times(app, client, run, tmp_path):
    source = tmp_path / "packages"
    source.mkdir()
    wheel = make_wheel(source, "Alpha.Beta", "1.0", legacy=True)
    os.utime(wheel, (1_500_000_000, 1_500_000_000))
    code, out, _err = run("import", "--keep-times", str(source), "--quiet")
    assert (code, out) == (0, "imported 1, identical 0, skipped 0, rejected 0\n")
    page = client.get("/simple/alpha-beta/", headers={**basic("alice"), "Accept": JSON}).json
    [entry] = page["files"]
    assert (entry["filename"], entry["upload-time"]) == (
        "Alpha.Beta-1.0-py3-none-any.whl",
        "2017-07-14T02:40:00.000000Z",
    )


def test_import_owner_becomes_owner_of_new_projects(app, run, tmp_path):
    source = tmp_path / "packages"
    source.mkdir()
    make_wheel(source, "alpha", "1.0")
    code, _out, _err = run("import", str(source), "--quiet", "--owner", "bob")
    assert code == 0
    db = app.extensions["teamindex"].db
    assert db.project_with_role("alpha", db.get_user("bob").id)[1] == "owner"
    assert db.project_with_role("alpha", db.get_user("alice").id)[1] is None
    code, _out, err = run("import", str(source), "--owner", "nobody")
    assert code == 1
    assert err == "teamindex: error: no user 'nobody'\n"


def test_import_progress_goes_to_stderr(app, run, tmp_path):
    source = tmp_path / "packages"
    source.mkdir()
    make_wheel(source, "alpha", "1.0")
    code, out, err = run("import", str(source))
    assert code == 0
    assert out == "imported 1, identical 0, skipped 0, rejected 0\n"
    assert "1/1 files" in err


# -- help ----------------------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(path, help text, child parser) for every subcommand, nested verbs included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield (*prefix, name), helps.get(name), child
                yield from subcommands(child, (*prefix, name))


def test_every_command_has_a_docstring():
    cli.build_parser()  # registers the commands of every cli module
    missing = [name for name, (func, _setup) in COMMANDS.items() if not func.__doc__]
    assert missing == []


def test_every_command_and_verb_has_help_text():
    found = list(subcommands(cli.build_parser()))
    names = {path for path, _help, _child in found}
    assert {("serve",), ("adduser",), ("passwd",), ("deluser",), ("users",), ("import",)} <= names
    for path, help_text, _child in found:
        assert help_text and help_text.strip(), f"`teamindex {' '.join(path)}` has no help"


@pytest.mark.parametrize(
    "command", ["serve", "adduser", "passwd", "deluser", "users", "import", "yank", "token"]
)
def test_help_output(command, capsys):
    cli.build_parser()
    if command not in COMMANDS:
        pytest.skip(f"no {command} command in this build")
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    doc = COMMANDS[command][0].__doc__ or ""
    first_words = " ".join(doc.split()[:5])
    assert out.startswith(f"usage: teamindex {command}")
    assert first_words in " ".join(out.split())
    assert "--data-dir" in out


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("teamindex ")


LOOK_ALIKES = ("pub\u0131", "\u017fecret", "\u212aey")  # dotless i, long s, Kelvin sign


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_refused_by_every_command(app, client, run, tmp_path, name):
    assert upload(client, make_wheel(tmp_path, "key", "1.0"), "alice").status_code == 200
    db = app.extensions["teamindex"].db
    code, _out, err = run("project", "create", name)
    assert code != 0 and "invalid" in err, err
    code, _out, err = run("grant", "bob", name, "owner")
    assert code != 0, err
    assert db.project_with_role("key", db.get_user("bob").id)[1] is None
    for pattern in (name, name + "*"):
        code, _out, err = run("token", "create", "bob", "--project", pattern)
        assert code != 0, err
    assert not db.list_tokens(db.get_user("bob").id)
