"""Proxy mode (issue 13): a proxied project page against the same page hosted locally.

`python bench/proxy.py` starts a PEP 691 index on loopback as the upstream (the fake from
tests/upstream_support.py, filled with synthetic wheels), and `teamindex serve --upstream`
in front of it. The same wheels are imported locally under another name, so the two pages
list the same files. It measures, with the same load generator (wrk when installed):

- warm page: `/simple/<local>/` vs `/simple/<proxied>/`, with pip's Accept and gzip;
- cold page: the first request for a name never seen, vs the upstream round trip for it;
- warm file: a cached upstream wheel vs a hosted one.

Loopback only; nothing leaves the machine. Prints one table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from builders import make_wheel  # noqa: E402
from load import LoadConfig, run_load  # noqa: E402
from peers import basic_auth_header, free_port, spawn  # noqa: E402
from upstream_support import running_upstream  # noqa: E402

PASSWORD = "bench-password-1"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def teamindex(*args: str | Path, stdin: str | None = None) -> None:
    subprocess.run(
        [python(), "-m", "teamindex", *map(str, args)],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def timed_get(url: str, headers: dict[str, str]) -> float:
    """Milliseconds for one GET on a new connection (what a cold request costs)."""
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def wait_ready(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"teamindex did not start: {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=60, help="wheels on each page")
    parser.add_argument("--cold", type=int, default=20, help="cold names to time")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--peers",
        default="",
        help="peer mode: comma list of teamindex,devpi,proxpi,peryx (see bench/proxypeers.py)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="peer mode: load rounds (median)")
    parser.add_argument("--padding", type=int, default=100_000, help="peer mode: bytes per wheel")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="peer-mode reports")
    args = parser.parse_args()
    if args.peers:
        from proxymode import run_peer_mode

        return run_peer_mode(args)
    work = Path(tempfile.mkdtemp(prefix="teamindex-proxy-bench-"))
    cfg = LoadConfig(args.threads, args.connections, args.duration)
    auth = {"Authorization": basic_auth_header("alice", PASSWORD)}
    page_headers = {**auth, "Accept": PIP_ACCEPT, "Accept-Encoding": "gzip, deflate"}
    rows: list[tuple[str, str]] = []
    try:
        with running_upstream() as upstream:
            local_dir = work / "local"
            local_dir.mkdir()
            for number in range(args.files):
                version = f"1.{number}"
                upstream.publish(work / "up", "pubproj", version)
                make_wheel(local_dir, "localproj", version)
            for number in range(args.cold):
                upstream.publish(work / "up", f"cold-{number}", "1.0")
            data = work / "data"
            data.mkdir()
            teamindex("adduser", "alice", "--admin", "--password-stdin", "--data", data,
                      stdin=PASSWORD + "\n")  # fmt: skip
            teamindex("import", "--quiet", local_dir, "--data", data)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = spawn(
                [python(), "-m", "teamindex", "serve", "--data", data, "--host", "127.0.0.1",
                 "--port", str(port), "--upstream", upstream.url],
                work / "serve.log",
            )  # fmt: skip
            try:
                wait_ready(f"{base}/healthz")
                for name in ("localproj", "pubproj"):  # warm: render once
                    timed_get(f"{base}/simple/{name}/", page_headers)
                local = run_load(f"{base}/simple/localproj/", page_headers, cfg)
                proxied = run_load(f"{base}/simple/pubproj/", page_headers, cfg)
                rows.append(
                    ("warm page, local", f"{local.rps:8.0f} req/s  p99 {local.p99_ms:.1f} ms")
                )
                rows.append(
                    ("warm page, proxied", f"{proxied.rps:8.0f} req/s  p99 {proxied.p99_ms:.1f} ms")
                )
                rows.append(("proxied / local", f"{proxied.rps / local.rps:8.0%}"))
                direct, cold = [], []
                for number in range(args.cold):
                    name = f"cold-{number}"
                    direct.append(timed_get(f"{upstream.url}{name}/", {"Accept": PIP_ACCEPT}))
                    cold.append(timed_get(f"{base}/simple/{name}/", page_headers))
                rows.append(
                    ("upstream round trip", f"{statistics.median(direct):8.1f} ms (median)")
                )
                rows.append(
                    ("cold page via teamindex", f"{statistics.median(cold):8.1f} ms (median)")
                )
                wheel = upstream.projects["pubproj"][0].filename
                local_wheel = wheel.replace("pubproj", "localproj")
                timed_get(f"{base}/files/pubproj/{wheel}", auth)  # fetch and keep
                hosted = run_load(f"{base}/files/localproj/{local_wheel}", auth, cfg)
                cached = run_load(f"{base}/files/pubproj/{wheel}", auth, cfg)
                rows.append(("warm file, hosted", f"{hosted.rps:8.0f} req/s"))
                rows.append(("warm file, cached upstream", f"{cached.rps:8.0f} req/s"))
                errors = local.errors + proxied.errors + hosted.errors + cached.errors
                rows.append(("errors", f"{errors:8d}  ({local.tool})"))
            finally:
                server.terminate()
                server.wait(15)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
