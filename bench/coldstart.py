"""Cold start of `teamindex serve`: spawn to the first 200 on /simple/ (issue 14).

    python bench/coldstart.py                       # 15 starts, this checkout's code
    python bench/coldstart.py --src /tmp/old-tree   # the same, with another tree's code

Makes (once per run) a data dir with one admin and a few imported wheels, then spawns
`python -m teamindex serve` on it `--repeats` times, polling /simple/ with Basic auth every
2 ms, and prints the median, min and max seconds as JSON. `--src` runs another checkout's
`teamindex` package with the same interpreter (its directory goes first on sys.path), which is
how an A/B on one machine is measured: alternate the two, as other load comes and goes.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PASSWORD = "cold-start-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(python: str, src: Path, *args: str, stdin: str | None = None) -> None:
    """Run `python -m teamindex ARGS` from `src` (so its package is the one imported)."""
    subprocess.run(
        [python, "-m", "teamindex", *args], cwd=src, input=stdin, text=True, check=True,
        stdout=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux), -1 elsewhere: the part of a cold
    start that other load on the machine does not inflate."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_200(python: str, src: Path, data_dir: Path, timeout: float = 30) -> tuple[float, float]:
    """Seconds from spawn to the first 200 on /simple/, and the server's CPU seconds then."""
    port = free_port()
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "teamindex", "serve", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with {proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/simple/", headers={"Authorization": auth})
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.perf_counter() - started, cpu_seconds(proc.pid)
            except OSError:
                pass
            time.sleep(0.002)
        raise SystemExit("no 200 within the timeout")
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable, help="interpreter with teamindex's deps")
    p.add_argument("--src", type=Path, default=REPO_DIR, help="tree whose teamindex/ is run")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    try:
        data = work / "data"
        data.mkdir()
        cli(args.python, args.src, "adduser", "alice", "--admin", "--password-stdin",
            "--data-dir", str(data), stdin=PASSWORD + "\n")  # fmt: skip
        runs = [first_200(args.python, args.src, data) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    times = [wall for wall, _cpu in runs]
    print(json.dumps({
        "src": str(args.src), "median_s": round(statistics.median(times), 3),
        "cpu_median_s": round(statistics.median(cpu for _wall, cpu in runs), 3),
        "min_s": round(min(times), 3), "max_s": round(max(times), 3),
        "loadavg": os.getloadavg()[0],
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
