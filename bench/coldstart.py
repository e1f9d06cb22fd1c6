"""Cold start of `teamindex serve`: spawn to the first 200 on /simple/ (issue 14).

    python bench/coldstart.py                       # 15 starts, this checkout's code
    python bench/coldstart.py --src /tmp/old-tree   # the same, with another tree's code

Makes (once per run) a data dir with one admin and a read token of hers, then spawns
`python -m teamindex serve` on it `--repeats` times per credential, polling /simple/ with Basic
auth every 2 ms, and prints the median, min and max seconds as JSON, one line per credential.
`--auth token` logs in as `__token__` with the token (what CI sends: one SHA-256), `--auth
password` with alice's password (one scrypt verification, ~0.1 s, on the first request of a
new process); the default measures both, alternating start by start. `--src` runs another checkout's
`teamindex` package with the same interpreter (its directory goes first on sys.path), which is
how an A/B on one machine is measured: alternate the two, as other load comes and goes.

Before the starts, the tree's package is compiled to bytecode (`compileall`), as `pip install`
does for an installed package: a checkout run with PYTHONDONTWRITEBYTECODE=1 (or from a
read-only tree) never caches its .pyc files, and compiling ~100 modules costs ~0.1 s of CPU
on every start. `--no-compile` measures that case (existing .pyc files are still used).

`--installed` measures what a deployment runs (the systemd unit's `/opt/teamindex/bin/python -m
teamindex serve`): the tree is `pip install`ed, not editable, into bench/.venvs/coldstart-installed
(its dependencies once, the tree's code on every run), and served from there. An editable
install, as dev.py makes for the tests, adds its import hook to every start (~15 ms here).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
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


def cli(python: str, src: Path, *args: str, stdin: str | None = None) -> str:
    """Run `python -m teamindex ARGS` from `src` (so its package is the one imported);
    return its standard output."""
    return subprocess.run(
        [python, "-m", "teamindex", *args], cwd=src, input=stdin, text=True, check=True,
        capture_output=True, timeout=300,
    ).stdout  # fmt: skip


def basic(user: str, secret: str) -> str:
    """The Authorization header value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux), -1 elsewhere: the part of a cold
    start that other load on the machine does not inflate."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_200(
    python: str, src: Path, data_dir: Path, auth: str, timeout: float = 30
) -> tuple[float, float]:
    """Seconds from spawn to the first 200 on /simple/, and the server's CPU seconds then."""
    port = free_port()
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


def install(src: Path) -> tuple[str, Path]:
    """`pip install` the tree at `src` (not editable) into its own venv: (python, the
    site-packages directory it is run from). pip compiles the bytecode, as for a deployment."""
    venv = BENCH_DIR / ".venvs" / "coldstart-installed"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([*pip, str(src)], check=True, timeout=900)  # with its dependencies
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(src)], check=True, timeout=900)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    return str(python), Path(site)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable, help="interpreter with teamindex's deps")
    p.add_argument("--src", type=Path, default=REPO_DIR, help="tree whose teamindex/ is run")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--auth", choices=("both", "token", "password"), default="both")
    p.add_argument("--no-compile", action="store_true", help="don't compile the tree's bytecode")
    p.add_argument("--installed", action="store_true", help="pip install the tree, run that")
    args = p.parse_args(argv)
    if args.installed:
        args.python, args.src = install(args.src)
    elif not args.no_compile:  # with the interpreter that runs it: .pyc names carry its version
        subprocess.run([args.python, "-m", "compileall", "-q", str(args.src / "teamindex")],
                       check=True, timeout=300)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    try:
        data = work / "data"
        data.mkdir()
        cli(args.python, args.src, "adduser", "alice", "--admin", "--password-stdin",
            "--data-dir", str(data), stdin=PASSWORD + "\n")  # fmt: skip
        made = cli(args.python, args.src, "token", "create", "alice", "--data-dir", str(data))
        found = re.search(r"tix_[A-Za-z0-9_-]+", made)
        if found is None:
            raise SystemExit(f"no token in the output of `token create`: {made!r}")
        creds = {"token": basic("__token__", found.group(0)), "password": basic("alice", PASSWORD)}
        kinds = list(creds) if args.auth == "both" else [args.auth]
        runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind in kinds:  # alternated, so that other load hits both alike
                runs[kind].append(first_200(args.python, args.src, data, creds[kind]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind, results in runs.items():
        times = [wall for wall, _cpu in results]
        print(json.dumps({
            "src": str(args.src), "auth": kind, "compiled": not args.no_compile,
            "installed": args.installed,
            "median_s": round(statistics.median(times), 3),
            "cpu_median_s": round(statistics.median(cpu for _wall, cpu in results), 3),
            "min_s": round(min(times), 3), "max_s": round(max(times), 3),
            "loadavg": os.getloadavg()[0],
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
