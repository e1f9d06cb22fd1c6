"""Real nginx in front of a real teamindex, configured by `teamindex nginx-config`.

nginx runs from a throwaway prefix in a temp dir on a free loopback port, in the
foreground, with its pid file and temp dirs there and errors on stderr (a file): no daemon,
nothing global touched. Stopped by its PID.
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


def nginx_available() -> bool:
    return Path(NGINX).exists()


def require_nginx() -> None:
    """Skip without nginx; in CI its absence is a failure (dev.py installs it)."""
    if nginx_available():
        return
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail("nginx is not installed (python3 dev.py test installs it)")
    pytest.skip("nginx is not installed (apt-get install nginx)")


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
class Nginx:
    process: subprocess.Popen
    url: str
    prefix: Path

    def log_text(self) -> str:
        return (self.prefix / "stderr.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_nginx(prefix: Path, config_text: str, port: int, *, timeout: float = 15.0) -> Nginx:
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
    log = (prefix / "stderr.log").open("ab")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    handle = Nginx(process, f"http://127.0.0.1:{port}", prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited:\n{handle.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return handle
        except OSError:
            time.sleep(0.05)
    handle.stop()
    raise AssertionError(f"nginx did not listen on {port}:\n{handle.log_text()}")
