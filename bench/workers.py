"""`/simple/` and the 300-file project page at 1 and N `serve --workers`, in one run.

    python bench/workers.py [--workers N] [--rounds 3] [--duration 10] [--postgresql] [--no-peryx]

Uses bench/run.py's corpus (1,012 projects, 6,311 files; cached in bench/.cache), one
data dir imported once, and the same wrk load (-t2 -c16, Basic auth on every request). The
machine is shared, so the 1- and N-worker servers take turns, round after round, and the
table gives each one's median and the load average around the run. peryx (a hosted index
read with a token, seeded by `peryx import-dir`) is measured in every round too, so the ratio
to it comes from the same run (`--no-peryx` skips it).

--postgresql compares SQLite with PostgreSQL instead, both at N workers: the data dir's
database is copied by `teamindex migrate-store` into a throwaway cluster (tests/pg_support.py:
Debian's binaries, fsync off, which does not matter to reads) on loopback TCP.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corpus
import load
import peers

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
USER, PASSWORD = "alice", "bench-password-1"
HTML = "text/html"


def teamindex(*args: str | Path, data_dir: Path, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "teamindex", *map(str, args), "--data-dir", str(data_dir)],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        timeout=3600,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    data_dir: Path,
    workers: int,
    log: Path,
    database_url: str = "",
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "teamindex", "serve", "--data-dir", str(data_dir),
             "--port", str(port), "--workers", str(workers), "--database-url", database_url],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/simple/"
    headers = auth()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if peers.http_get(url, headers)[0] == 200:
                time.sleep(1.0)  # every worker past its start-up
                return process, url
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not answer in 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def auth() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": HTML}


Rates = dict[tuple[str, str], list[float]]


def main_corpus_paths() -> list[Path]:
    """The wheels and sdists of the main corpus (generated once, then cached)."""
    spec = corpus.CorpusSpec()
    generated = corpus.generate(
        corpus.main_corpus_dists(spec), CACHE_DIR / "corpus" / f"main-{spec.key()}"
    )
    return list(generated.paths)


def seeded_data_dir(root: Path, paths: list[Path]) -> Path:
    """root/data with the bench's user and `paths` imported (through root/src)."""
    data_dir = root / "data"
    data_dir.mkdir()
    teamindex("adduser", USER, "--password-stdin", data_dir=data_dir, stdin=PASSWORD + "\n")
    peers.link_tree(paths, root / "src")
    teamindex("import", "--quiet", root / "src", data_dir=data_dir)
    return data_dir


def add_round_options(parser: argparse.ArgumentParser) -> None:
    """--rounds, --duration and --connections, as every alternating-rounds bench takes them."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)


def rounds_footer(
    args: argparse.Namespace,
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    note: str = "",
) -> str:
    """The line under a rounds table: how it was loaded, and the load average around it."""
    return (
        f"\nmedians of {args.rounds} alternating rounds, wrk -t2 -c{args.connections} "
        f"-d{args.duration:g}s{note}; load average (1/5/15 min) before "
        f"{' '.join(f'{x:.2f}' for x in before)}, after {' '.join(f'{x:.2f}' for x in after)}"
    )


def measure(
    targets: list[tuple[str, str]], label: str, cfg: load.LoadConfig, rates: Rates, round_: int
) -> None:
    """Load each (endpoint name, URL) in turn, keep its rate under (name, label), say it."""
    for name, target in targets:
        result = load.run_load(target, auth(), cfg)
        rates.setdefault((name, label), []).append(result.rps)
        print(
            f"round {round_ + 1}, {label}, {name}: {result.rps:,.0f} req/s, "
            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors",
            flush=True,
        )


def page_targets(simple_url: str) -> list[tuple[str, str]]:
    """`/simple/` and the 300-file project page under one index URL."""
    return [("/simple/", simple_url), ("project page", f"{simple_url}{corpus.BIG_PROJECT}/")]


class Peryx:
    """peryx (bench/peers.py: a hosted index read with a token) on the same corpus, measured
    in every round beside the teamindex servers, so the ratio comes from one run (issue 16)."""

    def __init__(self, tmp: Path, files: list[Path]) -> None:
        self.peer = peers.PeryxPeer("peryx", "peryx", PASSWORD)
        print(f"peer: {self.peer.install()}", flush=True)
        self.store, self.log = tmp / "peryx", tmp / "peryx.log"
        self.peer.load(files, [], self.store)

    def measure(self, cfg: load.LoadConfig, rates: Rates, round_: int) -> None:
        """One round of page loads, kept under the label "peryx"."""
        handle = self.peer.start(self.store, free_port(), self.log)
        try:
            peers.wait_for_status(handle.index_url, auth(), handle.proc, 60)
            measure(page_targets(handle.index_url), "peryx", cfg, rates, round_)
        finally:
            peers.stop_process(handle.proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    add_round_options(parser)
    parser.add_argument(
        "--postgresql", action="store_true", help="SQLite vs PostgreSQL at N workers"
    )
    parser.add_argument(
        "--no-peryx", action="store_true", help="skip peryx (measured in the same rounds)"
    )
    args = parser.parse_args()
    paths = main_corpus_paths()
    cfg = load.LoadConfig(2, args.connections, args.duration)
    rates: dict[tuple[str, str], list[float]] = {}
    cluster = None
    with tempfile.TemporaryDirectory(prefix="teamindex-bench-workers-") as tmp:
        data_dir, log = seeded_data_dir(Path(tmp), paths), Path(tmp) / "server.log"
        # (label, workers, database URL) of the two servers that take turns
        setups = [("1 worker", 1, ""), (f"{args.workers} workers", args.workers, "")]
        if args.postgresql:
            sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
            import pg_support

            cluster = pg_support.start_cluster()
            url_pg = cluster.empty_database()
            teamindex("migrate-store", "--database-url", url_pg, data_dir=data_dir)
            setups = [
                (f"SQLite, {args.workers} workers", args.workers, ""),
                (f"PostgreSQL, {args.workers} workers", args.workers, url_pg),
            ]
        peryx = None if args.no_peryx else Peryx(Path(tmp), paths)
        before = os.getloadavg()
        for round_ in range(args.rounds):
            if peryx is not None:
                peryx.measure(cfg, rates, round_)
            for label, workers, database_url in setups if round_ % 2 == 0 else setups[::-1]:
                process, url = start(data_dir, workers, log, database_url)
                try:
                    measure(page_targets(url), label, cfg, rates, round_)
                finally:
                    stop(process)
        after = os.getloadavg()
        if cluster is not None:
            cluster.stop()
    (first, _w, _u), (second, _w2, _u2) = setups
    with_peryx = peryx is not None
    extra = " peryx, req/s | N workers / peryx |" if with_peryx else ""
    print(f"\n| endpoint | {first}, req/s | {second}, req/s | ratio |{extra}")
    print("| --- | --- | --- | --- |" + (" --- | --- |" if with_peryx else ""))
    for name in ("/simple/", "project page"):
        one = statistics.median(rates[(name, first)])
        many = statistics.median(rates[(name, second)])
        row = f"| {name} | {one:,.0f} | {many:,.0f} | {many / one:.2f}x |"
        if with_peryx:
            theirs = statistics.median(rates[(name, "peryx")])
            row += f" {theirs:,.0f} | {many / theirs:.2f}x |"
        print(row)
    print(rounds_footer(args, before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
