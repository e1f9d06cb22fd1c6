"""How many slow clients it takes to hurt a normal one (issue 10, medium 4).

Starts `python -m teamindex serve` on a free loopback port with a fresh data dir, opens
slow connections that trickle request headers (one byte a second, never finishing), and
after each step times a normal client's GET /healthz and GET /simple/ (with credentials).
A probe that fails or takes longer than --probe-timeout counts as failed.

    python bench/slowclients.py                       # one attacking address (127.0.0.2)
    python bench/slowclients.py --addresses 50        # spread over 127.0.1.1 ... 127.0.1.50
    PYTHONPATH=/path/to/other/checkout python bench/slowclients.py   # measure another tree

Loopback only; bounded: at most --max connections, each probe --probe-timeout seconds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVE_LINE = re.compile(r"serving http://([^/\s]+)/simple/")
PASSWORD = "slow-clients-bench"


def start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, TEAMINDEX_DATA_DIR=str(data_dir))
    env["TEAMINDEX_PASSWORD_HASH"] = "pbkdf2:sha256:1000"
    data_dir.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "teamindex", "adduser", "alice", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        cwd=data_dir,  # not the checkout: `python -m` would import the package found there
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "teamindex", "serve", "--port", "0"],
        env=env,
        cwd=data_dir,
        stdout=handle,
        stderr=handle,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = SERVE_LINE.search(log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')}")


def probe(host: str, port: int, path: str, timeout: float) -> float | None:
    """Seconds for one complete answer (status 200), or None when it failed or was slow."""
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return None
    elapsed = time.monotonic() - started
    return elapsed if answer.startswith(b"HTTP/1.1 200") and elapsed <= timeout else None


class Tricklers:
    """Slow connections, each sending one more header byte per second from a thread."""

    def __init__(self, host: str, port: int, sources: list[str]) -> None:
        self.host, self.port, self.sources = host, port, sources
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def open(self, count: int) -> int:
        """Open `count` more; returns how many the server accepted (connect did not fail)."""
        opened = 0
        for index in range(count):
            source = self.sources[(len(self.socks) + index) % len(self.sources)]
            try:
                sock = socket.create_connection(
                    (self.host, self.port), timeout=1.0, source_address=(source, 0)
                )
                sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                continue
            self.socks.append(sock)
            opened += 1
        return opened

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for sock in list(self.socks):
                with contextlib.suppress(OSError):
                    sock.send(b"X")

    def close(self) -> None:
        self.stop.set()
        for sock in self.socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="0,25,50,90,100,110,150,200")
    parser.add_argument("--max", type=int, default=300, help="most slow connections opened")
    parser.add_argument("--addresses", type=int, default=1, help="attacking loopback addresses")
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    args = parser.parse_args()
    steps = [min(int(step), args.max) for step in args.steps.split(",")]
    if args.addresses == 1:
        sources = ["127.0.0.2"]
    else:
        sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(args.addresses)]
    with tempfile.TemporaryDirectory(prefix="slowclients-") as tmp:
        process, where = start_server(Path(tmp) / "data", Path(tmp) / "serve.log")
        host, port = where.rsplit(":", 1)
        tricklers = Tricklers(host, int(port), sources)
        try:
            print(f"{'slow':>5} {'open':>5} {'healthz s':>10} {'simple s':>10}")
            for step in steps:
                if step > len(tricklers.socks):
                    tricklers.open(step - len(tricklers.socks))
                time.sleep(1.0)
                results = [
                    probe(host, int(port), path, args.probe_timeout)
                    for path in ("/healthz", "/simple/")
                ]
                shown = [f"{r:10.3f}" if r is not None else f"{'FAIL':>10}" for r in results]
                print(f"{step:>5} {len(tricklers.socks):>5} {shown[0]} {shown[1]}", flush=True)
        finally:
            tricklers.close()
            process.terminate()
            process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
