#!/usr/bin/env python3
"""Developer entry point; needs nothing but python3 (3.10+).

    python3 dev.py serve [teamindex serve args...]   run the index on http://127.0.0.1:8080/
    python3 dev.py teamindex ARGS...                  any teamindex command (adduser, users, ...)
    python3 dev.py test [pytest args...]              lint, install the real clients, run pytest

The project venv is .venv (`pip install -e .`, plus `[test]` for tests). The clients the
end-to-end tests drive (twine, poetry, pdm, hatch, build and a current pip) each get their
own venv under .tools/<name>/, made by the uv from .venv. Stamp files remember what was
installed, so a second run installs nothing; editing pyproject.toml reinstalls the project,
editing a client's requirements below reinstalls that client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
VENV_PYTHON = VENV_BIN / "python"
VENV_STAMP = VENV / ".dev-stamp"
TOOLS = ROOT / ".tools"
PYPROJECT = ROOT / "pyproject.toml"
DATA_DIR = ROOT / "data"

# Each client in its own venv: name -> requirements. tests/tools.py finds them by name.
# pdm 2.29 breaks with hishel 2.0 (shared/PROTOCOL.md section 0).
CLIENTS: dict[str, tuple[str, ...]] = {
    "twine": ("twine>=7,<8",),
    "poetry": ("poetry>=2,<3",),
    "pdm": ("pdm>=2,<3", "hishel<2"),
    "hatch": ("hatch>=1,<2",),
    "build": ("build>=1.2",),
    "pip": ("pip",),  # upgraded to current: the venv's own pip is what the tests run
}
STAMP_NAME = ".dev-stamp"


class SetupError(Exception):
    """A set-up step failed; str() is the one-line reason."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def run(cmd: Sequence[str | Path], *, quiet: bool = False) -> None:
    """Run a set-up command; on failure show its output (if captured) and raise."""
    args = [str(part) for part in cmd]
    result = subprocess.run(
        args,
        cwd=ROOT,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=quiet,
        text=True,
    )
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout + result.stderr)
        raise SetupError(f"`{' '.join(args)}` exited with status {result.returncode}")


# -- the project venv -----------------------------------------------------------------------


def _venv_works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "True"


def _stamp_says(stamp: Path, expected: str) -> bool:
    try:
        return stamp.read_text(encoding="utf-8") == expected
    except OSError:
        return False


def _venv_is_fresh(expected: str) -> bool:
    """The stamp records `expected` and is newer than pyproject.toml (dependencies)."""
    return (
        _stamp_says(VENV_STAMP, expected)
        and VENV_STAMP.stat().st_mtime >= PYPROJECT.stat().st_mtime
    )


def ensure_venv(*, with_tests: bool) -> None:
    """Create .venv if missing or broken and (re)install the project when stale."""
    if not _venv_works(VENV_PYTHON):
        say(f"creating {VENV.relative_to(ROOT)} with {sys.executable}")
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    if _venv_is_fresh(_venv_stamp_text(with_tests=True)) or (
        not with_tests and _venv_is_fresh(_venv_stamp_text(with_tests=False))
    ):
        return  # a venv with [test] also serves `serve`; the reverse needs an install
    # Keep [test] when re-installing a venv that had it (serve after editing pyproject).
    with_tests = with_tests or _stamp_says(VENV_STAMP, _venv_stamp_text(with_tests=True))
    target = ".[test]" if with_tests else "."
    say(f"installing the project into .venv: pip install -e '{target}'")
    VENV_STAMP.unlink(missing_ok=True)
    has_pip = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "--version"], capture_output=True, check=False
    )
    if has_pip.returncode != 0:  # a venv made by `uv venv` has no pip
        run([VENV_PYTHON, "-m", "ensurepip", "--upgrade"], quiet=True)
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--editable", target])
    VENV_STAMP.write_text(_venv_stamp_text(with_tests=with_tests), encoding="utf-8")


def _venv_stamp_text(*, with_tests: bool) -> str:
    return f"extras={'test' if with_tests else ''}\n"


# -- the clients under .tools/ ----------------------------------------------------------------


def ensure_clients() -> list[str]:
    """Install each client into .tools/<name>/ unless its stamp matches; return failures."""
    uv = VENV_BIN / "uv"
    if not uv.exists():
        raise SetupError(f"{uv} is missing; it comes with `pip install -e '.[test]'`")
    failed = []
    for name, requirements in CLIENTS.items():
        home = TOOLS / name
        stamp = home / STAMP_NAME
        expected = "\n".join(requirements) + "\n"
        if _stamp_says(stamp, expected) and _venv_works(home / "bin" / "python"):
            continue
        say(f"installing {name} into .tools/{name}: {' '.join(requirements)}")
        try:
            if home.exists():
                shutil.rmtree(home)
            run([uv, "venv", "--quiet", "--python", sys.executable, home], quiet=True)
            python = str(home / "bin" / "python")
            install = [str(uv), "pip", "install", "--quiet", "--python", python]
            run([*install, "--upgrade", *requirements], quiet=True)
        except SetupError as exc:
            say(f"could not install {name}: {exc}")
            failed.append(name)
            continue
        stamp.write_text(expected, encoding="utf-8")
    return failed


# -- Debian packages the tests drive -----------------------------------------------------------

# package -> (the binary that proves it is there, the tests that need it). Debian's chromium
# drives tests/browser through Playwright (`playwright install` downloads a browser build,
# which cannot work here); Debian's nginx and caddy run the configs `teamindex nginx-config`
# and `caddy-config` print in front of teamindex (tests/e2e/test_front_servers.py), from a
# temp dir. Debian's postgresql gives tests/pg_support.py the binaries of a throwaway
# cluster (issue 16).
DEBIAN_TOOLS: dict[str, tuple[Path, str]] = {
    "chromium": (Path("/usr/bin/chromium"), "the browser tests"),
    "nginx": (Path("/usr/sbin/nginx"), "the front-server tests"),
    "caddy": (Path("/usr/bin/caddy"), "the Caddy front-server tests"),
    "postgresql": (Path("/usr/lib/postgresql/*/bin/initdb"), "the PostgreSQL tests"),
}


def _present(binary: Path) -> bool:
    """The binary exists (a * in its path matches any version directory)."""
    if "*" in str(binary):
        return any(Path("/").glob(str(binary).lstrip("/")))
    return binary.exists()


def ensure_debian_tools() -> list[str]:
    """Install the missing DEBIAN_TOOLS with apt (one update, one install) when we are
    root; return the packages still missing."""
    missing = [name for name, (binary, _tests) in DEBIAN_TOOLS.items() if not _present(binary)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get") is not None:
        say(f"installing {' '.join(missing)} for the tests: apt-get install -y {' '.join(missing)}")
        os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
        try:
            run(["apt-get", "update", "-qq"], quiet=True)
            run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], quiet=True
            )
        except SetupError as exc:
            say(f"could not install {' '.join(missing)}: {exc}")
    return [name for name in missing if not _present(DEBIAN_TOOLS[name][0])]


# -- commands ---------------------------------------------------------------------------------


def exec_teamindex(args: Sequence[str]) -> int:
    """Replace this process with `teamindex ARGS` from .venv; the repo's ./data is the
    default data dir wherever dev.py is run from (a flag or TEAMINDEX_DATA_DIR wins)."""
    ensure_venv(with_tests=False)
    env = dict(os.environ)
    env.setdefault("TEAMINDEX_DATA_DIR", str(DATA_DIR))
    env["TEAMINDEX_LAUNCHER"] = "python3 dev.py teamindex"  # for hints naming a command
    argv = [str(VENV_PYTHON), "-m", "teamindex", *args]
    os.execve(argv[0], argv, env)  # noqa: S606 - our own venv's python
    return 0  # not reached


def cmd_serve(args: Sequence[str]) -> int:
    say("starting teamindex (stop with Ctrl-C)")
    return exec_teamindex(["serve", *args])


def cmd_test(args: Sequence[str]) -> int:
    ensure_venv(with_tests=True)
    failed = ensure_clients()
    if failed:
        if in_ci():
            raise SetupError(f"clients not installed in CI: {', '.join(failed)}")
        say(f"end-to-end tests needing {', '.join(failed)} will be skipped")
    for name in ensure_debian_tools():
        binary, tests = DEBIAN_TOOLS[name]
        if in_ci():
            raise SetupError(f"{binary} not installed in CI: {tests} need it")
        say(f"{tests} will be skipped: no {binary}")
    lint_ok = True
    for check in (["check", "."], ["format", "--check", "."]):
        say(f"ruff {' '.join(check)}")
        status = subprocess.run([str(VENV_BIN / "ruff"), *check], cwd=ROOT, check=False)
        lint_ok = lint_ok and status.returncode == 0
    say(f"pytest {' '.join(args)}".rstrip())
    status = subprocess.run([str(VENV_PYTHON), "-m", "pytest", *args], cwd=ROOT, check=False)
    if status.returncode == 0 and not any(not arg.startswith("-") for arg in args):
        status = second_pass(args)
    if status.returncode == 0 and not lint_ok:
        say("tests passed but ruff found problems")
        return 1
    return status.returncode


# The whole suite runs on the defaults (SQLite + the data dir); then the route, access and
# end-to-end suites run again on PostgreSQL (a throwaway cluster, tests/pg_support.py) with
# their files in S3 (SeaweedFS, tests/s3_support.py), both started by the tests (issue 16).
SECOND_PASS_ENV = {"TEAMINDEX_TEST_DATABASE": "postgresql", "TEAMINDEX_TEST_STORAGE": "s3"}
SECOND_PASS_TESTS = (
    "tests/test_access_matrix.py",
    "tests/test_access.py",
    "tests/test_files_routes.py",
    "tests/test_simple_routes.py",
    "tests/test_upload_routes.py",
    "tests/test_upstream_routes.py",
    "tests/test_hotpath.py",
    "tests/test_hotfiles.py",
    "tests/test_throttle.py",
    "tests/e2e",
)


def second_pass(args: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    """After a whole-suite run: the route, access and e2e suites again on PostgreSQL + S3."""
    flags = " ".join(f"{k}={v}" for k, v in SECOND_PASS_ENV.items())
    say(f"{flags} pytest {' '.join([*args, *SECOND_PASS_TESTS])}")
    return subprocess.run(
        [str(VENV_PYTHON), "-m", "pytest", *args, *SECOND_PASS_TESTS],
        cwd=ROOT,
        env=os.environ | SECOND_PASS_ENV,
        check=False,
    )


COMMANDS = {"serve": cmd_serve, "teamindex": exec_teamindex, "test": cmd_test}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip() if __doc__ else "", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except SetupError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
