"""Real nginx or Caddy in front of a real teamindex, configured by `teamindex nginx-config`
or `teamindex caddy-config`.

Each runs from a throwaway prefix in a temp dir on a free loopback port, in the
foreground, with its pid file, temp dirs and state there and errors on stderr (a file): no
daemon, nothing global touched. Stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"


def nginx_available() -> bool:
    return Path(NGINX).exists()


def require_nginx() -> None:
    """Skip without nginx; in CI its absence is a failure (dev.py installs it)."""
    _require(NGINX, "nginx")


def require_caddy() -> None:
    """Skip without Caddy; in CI its absence is a failure (dev.py installs it)."""
    _require(CADDY, "caddy")


def _require(binary: str, package: str) -> None:
    if Path(binary).exists():
        return
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{package} is not installed (python3 dev.py test installs it)")
    pytest.skip(f"{package} is not installed (apt-get install {package})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wrapper_conf(prefix: Path, included: Path) -> str:
    """The minimal nginx.conf around the printed config, as Debian's includes conf.d/."""
    temp = prefix / "temp"
    temp.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # the data dir is owner-only (0700)
    paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{paths}"
        f"    include {included};\n"
        "}\n"
    )


@dataclass
class FrontServer:
    """A running nginx or Caddy."""

    process: subprocess.Popen
    url: str
    prefix: Path
    # graceful, finishing in-flight requests: nginx's SIGQUIT, Caddy's SIGTERM
    stop_signal: signal.Signals = signal.SIGQUIT

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        return (self.prefix / "stderr.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, self.stop_signal)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_nginx(prefix: Path, config_text: str, port: int, *, timeout: float = 15.0) -> FrontServer:
    """nginx with `config_text` (the output of `teamindex nginx-config`) included."""
    prefix.mkdir(parents=True, exist_ok=True)
    included = prefix / "teamindex.conf"
    included.write_text(config_text)
    conf = prefix / "nginx.conf"
    conf.write_text(wrapper_conf(prefix, included))
    args: Sequence[str] = (
        NGINX,
        "-p",
        str(prefix),
        "-e",
        "stderr",
        "-c",
        str(conf),
        "-g",
        f"daemon off; master_process on; pid {prefix / 'nginx.pid'}; error_log stderr;",
    )
    server = FrontServer(_spawn(args, prefix), f"http://127.0.0.1:{port}", prefix)
    return _started(args, server, timeout=timeout)


def caddy_wrapper(prefix: Path, included: Path) -> str:
    """The Caddyfile around the printed site block: no admin endpoint, no automatic HTTPS
    (loopback), certificates and state in the prefix, errors on stderr."""
    return (
        "{\n"
        "\tadmin off\n"
        "\tauto_https off\n"
        f'\tstorage file_system "{prefix / "storage"}"\n'
        "}\n"
        f'import "{included}"\n'
    )


def start_caddy(prefix: Path, config_text: str, port: int, *, timeout: float = 15.0) -> FrontServer:
    """Caddy with `config_text` (the output of `teamindex caddy-config`) imported; its
    autosaved config and data go to XDG dirs in the prefix."""
    prefix.mkdir(parents=True, exist_ok=True)
    included = prefix / "teamindex.caddy"
    included.write_text(config_text)
    conf = prefix / "Caddyfile"
    conf.write_text(caddy_wrapper(prefix, included))
    args = (CADDY, "run", "--config", str(conf), "--adapter", "caddyfile")
    env = {
        **os.environ,
        "HOME": str(prefix),
        "XDG_CONFIG_HOME": str(prefix / "config"),
        "XDG_DATA_HOME": str(prefix / "data"),
    }
    process = _spawn(args, prefix, env=env)
    server = FrontServer(process, f"http://127.0.0.1:{port}", prefix, signal.SIGTERM)
    return _started(args, server, timeout=timeout)


def _spawn(
    args: Sequence[str], prefix: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    log = (prefix / "stderr.log").open("ab")
    try:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    finally:
        log.close()


def _started(args: Sequence[str], server: FrontServer, *, timeout: float = 15.0) -> FrontServer:
    """`server` once it accepts connections; stopped, with its log, if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"{args[0]} exited:\n{server.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"{args[0]} did not listen on {server.port}:\n{server.log_text()}")
