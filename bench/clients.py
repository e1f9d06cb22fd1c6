"""Real-client measurements: twine upload, curl transfers, uv pip install, poetry lock.

Each function runs its client as a subprocess with a timeout, in a throwaway HOME /
cache / config directory so that no user configuration or warm cache leaks in, and
returns plain numbers.  Server memory is sampled from /proc while the client runs.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import corpus
from peers import (
    USER,
    BenchError,
    ServerHandle,
    http_get,
    read_status_kib,
    run_cmd,
    tool_path,
    wait_for_status,
)

CLIENT_TIMEOUT = 1800.0


@dataclass
class RssSample:
    """RSS of a process before and at its peak during a sampled block (KiB)."""

    before_kib: int = 0
    peak_kib: int = 0

    @property
    def growth_mib(self) -> float:
        """Peak minus starting RSS, in MiB."""
        return max(0, self.peak_kib - self.before_kib) / 1024


@contextmanager
def sample_rss(pid: int, interval: float = 0.02) -> Iterator[RssSample]:
    """Poll /proc/<pid>/status VmRSS in a thread for the duration of the block."""
    sample = RssSample(before_kib=read_status_kib(pid, "VmRSS") or 0)
    sample.peak_kib = sample.before_kib
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            rss = read_status_kib(pid, "VmRSS")
            if rss is not None:
                sample.peak_kib = max(sample.peak_kib, rss)
            stop.wait(interval)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield sample
    finally:
        stop.set()
        thread.join(5)


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a client: throwaway HOME/XDG dirs, no keyring, no user config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "POETRY_", "TWINE_"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local/share"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- page parsing


class _LinkParser(html.parser.HTMLParser):
    """Collect ``<a>`` hrefs and their attributes from a PEP 503 page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


@dataclass(frozen=True)
class FileLink:
    """A distribution file as advertised by a simple page."""

    url: str
    has_metadata: bool


def find_file(index_url: str, project: str, filename: str, headers: dict[str, str]) -> FileLink:
    """Fetch ``<index>/<project>/`` (HTML) and return the absolute URL of ``filename``."""
    page_url = f"{index_url}{project}/"
    status, _, body = http_get(page_url, {**headers, "Accept": "text/html"})
    if status != 200:
        raise BenchError(f"GET {page_url} -> {status}")
    parser = _LinkParser()
    parser.feed(body.decode("utf-8", "replace"))
    for attrs in parser.links:
        href = attrs.get("href") or ""
        url = urllib.parse.urljoin(page_url, href).split("#", 1)[0]
        if urllib.parse.unquote(url.rsplit("/", 1)[-1]) == filename:
            meta = attrs.get("data-core-metadata") or attrs.get("data-dist-info-metadata")
            return FileLink(url, bool(meta) and meta != "false")
    raise BenchError(f"{filename} not listed on {page_url}")


# --------------------------------------------------------------------------- twine


def twine_upload(
    upload_url: str, password: str, files: Sequence[Path], server_pid: int
) -> dict[str, float]:
    """Upload ``files`` with ONE sequential ``twine upload`` (password auth); time it."""
    twine = tool_path("twine")
    with tempfile.TemporaryDirectory(prefix="bench-twine-") as tmp:
        env = clean_env(Path(tmp))
        cmd: list[str | Path] = [
            twine, "upload", "--non-interactive", "--disable-progress-bar",
            "--repository-url", upload_url, "-u", USER, "-p", password, *files,
        ]  # fmt: skip
        with sample_rss(server_pid) as rss:
            start = time.perf_counter()
            run_cmd(cmd, CLIENT_TIMEOUT, env=env)
            elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "files_per_s": len(files) / elapsed,
        "peak_rss_mib": rss.peak_kib / 1024,
        "rss_growth_mib": rss.growth_mib,
    }


# --------------------------------------------------------------------------- curl transfers


def _curl_stats(out: str) -> tuple[int, float, float]:
    """Parse our ``-w`` format: code, total seconds, bytes."""
    code, total, size = out.strip().split()
    return int(code), float(total), float(size)


def curl_upload(upload_url: str, password: str, path: Path, server_pid: int) -> dict[str, float]:
    """POST one large file as a legacy ``file_upload`` with curl; MiB/s and RSS growth."""
    name, version = path.name.split("-")[:2]
    sha256 = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(block)
    form = {
        ":action": "file_upload", "protocol_version": "1",
        "metadata_version": corpus.METADATA_VERSION, "name": name.replace("_", "-"),
        "version": version, "filetype": "bdist_wheel",
        "pyversion": "py3", "sha256_digest": sha256.hexdigest(),
    }  # fmt: skip
    cmd: list[str | Path] = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total} %{size_upload}",
    ]
    cmd += ["-u", f"{USER}:{password}", "-H", "Expect:"]
    for key, value in form.items():
        cmd += ["-F", f"{key}={value}"]
    cmd += ["-F", f"content=@{path};type=application/octet-stream", upload_url]
    with sample_rss(server_pid) as rss:
        code, total, _ = _curl_stats(run_cmd(cmd, CLIENT_TIMEOUT).stdout)
    if code not in (200, 201):
        raise BenchError(f"large upload to {upload_url} answered {code}")
    mib = path.stat().st_size / (1024 * 1024)
    return {"mib_per_s": mib / total, "seconds": total, "rss_growth_mib": rss.growth_mib}


def curl_download(
    url: str, password: str, server_pid: int | None, expect_bytes: int
) -> dict[str, float]:
    """GET one large file with curl to /dev/null; MiB/s and server RSS growth."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}"]
    cmd += ["-u", f"{USER}:{password}", url]
    if server_pid is None:
        code, total, size = _curl_stats(run_cmd(cmd, CLIENT_TIMEOUT).stdout)
        growth = 0.0
    else:
        with sample_rss(server_pid) as rss:
            code, total, size = _curl_stats(run_cmd(cmd, CLIENT_TIMEOUT).stdout)
        growth = rss.growth_mib
    if code != 200 or int(size) != expect_bytes:
        raise BenchError(
            f"download of {url} answered {code} with {int(size)} of {expect_bytes} bytes"
        )
    return {"mib_per_s": size / (1024 * 1024) / total, "seconds": total, "rss_growth_mib": growth}


# --------------------------------------------------------------------------- uv / poetry


def with_credentials(index_url: str, password: str) -> str:
    """Embed ``alice:<password>`` in an index URL."""
    parts = urllib.parse.urlsplit(index_url)
    netloc = f"{USER}:{urllib.parse.quote(password, safe='')}@{parts.netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def uv_install(index_url: str, password: str, package: str, expect: int) -> float:
    """Time ``uv pip install <package>`` into a fresh venv with a cold UV_CACHE_DIR."""
    uv = tool_path("uv")
    with tempfile.TemporaryDirectory(prefix="bench-uv-") as tmp:
        home = Path(tmp)
        env = clean_env(
            home,
            {
                "UV_CACHE_DIR": str(home / "uv-cache"),
                "UV_NO_CONFIG": "1",
                "UV_PYTHON_DOWNLOADS": "never",
            },
        )
        venv = home / "venv"
        run_cmd([uv, "venv", "--python", sys.executable, venv], 300, env=env)
        cmd: list[str | Path] = [
            uv,
            "pip",
            "install",
            "--python",
            venv / "bin" / "python",
            "--index-url",
            with_credentials(index_url, password),
            package,
        ]
        start = time.perf_counter()
        proc = run_cmd(cmd, CLIENT_TIMEOUT, env=env)
        elapsed = time.perf_counter() - start
    match = re.search(r"Installed (\d+) package", proc.stderr + proc.stdout)
    if not match or int(match.group(1)) != expect:
        raise BenchError(
            f"uv installed {match.group(1) if match else '?'} packages, expected {expect}"
        )
    return elapsed


POETRY_PYPROJECT = """\
[project]
name = "bench-consumer"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [{deps}]

[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
{sources}

[[tool.poetry.source]]
name = "team"
url = "{url}"
priority = "explicit"
"""


def poetry_lock(index_url: str, password: str, packages: Sequence[str]) -> float:
    """Time ``poetry lock`` of a fresh project on an explicit-priority source ``team``.

    Explicit sources are not inherited by transitive dependencies, so every package of
    the chain is declared with ``source = "team"`` (chain-0 alone would not resolve).
    """
    poetry = tool_path("poetry")
    with tempfile.TemporaryDirectory(prefix="bench-poetry-") as tmp:
        home = Path(tmp)
        project = home / "project"
        project.mkdir()
        deps = ", ".join(f'"{p}"' for p in packages)
        sources = "\n".join(f'{p} = {{ source = "team" }}' for p in packages)
        (project / "pyproject.toml").write_text(
            POETRY_PYPROJECT.format(deps=deps, sources=sources, url=index_url)
        )
        env = clean_env(
            home,
            {
                "POETRY_CACHE_DIR": str(home / "poetry-cache"),
                "POETRY_CONFIG_DIR": str(home / "poetry-config"),
                "POETRY_DATA_DIR": str(home / "poetry-data"),
                "POETRY_VIRTUALENVS_PATH": str(home / "venvs"),
                "POETRY_HTTP_BASIC_TEAM_USERNAME": USER,
                "POETRY_HTTP_BASIC_TEAM_PASSWORD": password,
                "POETRY_NO_INTERACTION": "1",
            },
        )
        start = time.perf_counter()
        run_cmd([poetry, "lock", "--no-interaction"], CLIENT_TIMEOUT, env=env, cwd=project)
        elapsed = time.perf_counter() - start
        locked = (project / "poetry.lock").read_text().count("[[package]]")
    if locked != len(packages):
        raise BenchError(f"poetry locked {locked} packages, expected {len(packages)}")
    return elapsed


# --------------------------------------------------------------------------- cold start


def cold_start(
    start_fn: Callable[[], ServerHandle], headers: dict[str, str], repeats: int = 3
) -> dict[str, float]:
    """Median seconds from process spawn to the first 200 on the index root.

    ``start_fn()`` spawns a server (without waiting) and returns its handle; each server
    is stopped before the next repetition, so every start reads the stored corpus anew.
    """
    times: list[float] = []
    for _ in range(repeats):
        spawned = time.perf_counter()
        handle = start_fn()
        try:
            ready = wait_for_status(handle.index_url, headers, handle.proc, 600)
            times.append(ready - spawned)
        finally:
            handle.stop()
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
