"""The real clients for end-to-end tests: where they are, how to run them, in what environment.

`python3 dev.py test` installs each client into its own venv under .tools/<name>/ (uv comes
with the project's .venv). A missing client fails the test in CI (CI=true) and skips it, with
the reason, elsewhere.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = ROOT / ".tools"

# client -> (its venv under .tools/, the executable in that venv's bin/)
CLIENTS: dict[str, tuple[str, str]] = {
    "twine": ("twine", "twine"),
    "poetry": ("poetry", "poetry"),
    "pdm": ("pdm", "pdm"),
    "hatch": ("hatch", "hatch"),
    "build": ("build", "python"),  # run as `python -m build`
    "pip": ("pip", "pip"),
}

DEFAULT_TIMEOUT = 180.0

# Settings from the outer environment that would point a client at another index, another
# config file or cached credentials; dropped so every test starts from nothing.
_DROPPED_PREFIXES = (
    "PIP_",
    "UV_",
    "POETRY_",
    "PDM_",
    "HATCH_",
    "TWINE_",
    "PYTHON",
    "VIRTUAL_ENV",
    "CONDA_",
    "PIPX_",
    "KEYRING_",
    "TEAMINDEX_",
)
_DROPPED = {"NETRC"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """A client or tool is not there: a failure in CI, a skip elsewhere."""
    hint = f"{reason} (run `python3 dev.py test`, which installs the clients)"
    if in_ci():
        pytest.fail(hint)
    pytest.skip(hint)


def _existing(path: Path, name: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        missing(f"{name} is not installed at {path}")
    return path


def client(name: str) -> Path:
    """The executable of one client in .tools/ (for `build`: that venv's python)."""
    venv_name, exe = CLIENTS[name]
    return _existing(TOOLS_DIR / venv_name / "bin" / exe, name)


def uv() -> Path:
    """uv from the project's venv (the one running the tests)."""
    return _existing(Path(sys.executable).parent / "uv", "uv")


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose home, config, cache and credential stores are all in tmp_path.

    PyPI stays reachable (build backends, poetry's virtualenv seeding); only settings that
    would redirect a client or lend it credentials from the outer world are dropped.
    """
    home = tmp_path / "home"
    dirs = {
        "HOME": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_STATE_HOME": home / ".local" / "state",
        "UV_CACHE_DIR": home / "uv-cache",
        "POETRY_CONFIG_DIR": home / "poetry-config",
        "POETRY_CACHE_DIR": home / "poetry-cache",
        "POETRY_DATA_DIR": home / "poetry-data",
        "PDM_HOME": home / "pdm-home",
        "PDM_CACHE_DIR": home / "pdm-cache",
        "HATCH_DATA_DIR": home / "hatch-data",
        "HATCH_CACHE_DIR": home / "hatch-cache",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    hatch_config = home / "hatch-config.toml"  # hatch refuses a HATCH_CONFIG that is missing
    hatch_config.touch()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED
    }
    env.update({key: str(path) for key, path in dirs.items()})
    env.update(
        {
            # pip: no config file (the machine's may add indexes), never prompt.
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # uv: no uv.toml from anywhere, no Python downloads.
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
            "POETRY_NO_INTERACTION": "1",
            "POETRY_KEYRING_ENABLED": "false",
            "POETRY_VIRTUALENVS_IN_PROJECT": "true",
            "PDM_CONFIG_FILE": str(home / "pdm-config.toml"),
            "PDM_CHECK_UPDATE": "false",
            "PDM_NON_INTERACTIVE": "1",
            "HATCH_CONFIG": str(hatch_config),
            "TWINE_NON_INTERACTIVE": "1",
            # No system keyring (D-Bus) for twine, pdm, hatch: credentials come from the test.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            # Wide, plain output: rich (twine, pdm, hatch) wraps messages at 80 columns
            # unless told otherwise (and always on TERM=dumb).
            "COLUMNS": "400",
            "NO_COLOR": "1",
        }
    )
    env.update(extra)
    return env


def run(
    cmd: Sequence[object],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a client (arguments: strings, paths, anything str() spells right) with output
    captured; `check` fails the test on a non-zero exit. The output is also printed, so
    pytest shows it for any failed test."""
    args = [str(part) for part in cmd]
    shown = shlex.join(args)
    try:
        result = subprocess.run(
            args,
            env=dict(env),
            cwd=cwd,
            timeout=timeout,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"`{shown}` timed out after {timeout:.0f}s\n{_captured(exc.stdout, exc.stderr)}"
        )
    print(f"$ {shown}  (exit {result.returncode})\n{_captured(result.stdout, result.stderr)}")
    if check and result.returncode != 0:
        pytest.fail(f"`{shown}` exited {result.returncode}; its output is above", pytrace=False)
    return result


def output(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr together, for asserting on messages wherever a client prints them."""
    return result.stdout + result.stderr


def _captured(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    def text(value: str | bytes | None) -> str:
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        return value or ""

    return f"--- stdout ---\n{text(stdout)}--- stderr ---\n{text(stderr)}"
