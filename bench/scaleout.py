"""`/simple/`, the 300-file project page and a download: SQLite + disk beside PostgreSQL +
S3, both at N `serve --workers`, in one run.

    python bench/scaleout.py [--workers N] [--rounds 3] [--duration 10] [--downloads redirect]

bench/run.py's corpus (1,012 projects, 6,311 files; cached in bench/.cache) is imported
into one data dir, then `teamindex migrate-store --storage s3://...` copies its database
into a throwaway PostgreSQL cluster (tests/pg_support.py: Debian's binaries, fsync off)
and its files into SeaweedFS (tests/s3_support.py: `weed server -s3`), both on loopback.
The two servers take turns round after round on this shared machine, under the same wrk
load (-t2 -c16, Basic auth on every request), as bench/workers.py does; the table gives
medians and the load average around the run.

The download is one wheel of the big project. With S3 in redirect mode (the default) the
index answers a 302 to a presigned URL and wrk does not follow it: the rate is what the
index itself can hand out, the bytes then come from the store. `--downloads stream` sends
the bytes through teamindex instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import corpus
import load
import peers
from workers import (
    add_round_options,
    auth,
    main_corpus_paths,
    measure,
    page_targets,
    rounds_footer,
    seeded_data_dir,
    start,
    stop,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pg_support
from s3_support import BUCKET, start_seaweedfs

ENDPOINTS = ("/simple/", "project page", "download")


def migrate(data_dir: Path, database_url: str, storage: str, env: dict[str, str]) -> str:
    """The data dir's rows into PostgreSQL and its files into the bucket; its summary."""
    done = subprocess.run(
        [sys.executable, "-m", "teamindex", "migrate-store", "--data-dir", str(data_dir),
         "--database-url", database_url, "--storage", storage],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"migrate-store failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    summary = [line.strip() for line in lines if "files:" in line and "verified" in line]
    return "\n".join(summary + lines[-1:])


def a_wheel_of_the_big_project(url: str) -> str:
    headers = {**auth(), "Accept": "application/vnd.pypi.simple.v1+json"}
    status, _headers, body = peers.http_get(f"{url}{corpus.BIG_PROJECT}/", headers)
    assert status == 200, status
    return next(
        entry["filename"]
        for entry in json.loads(body)["files"]
        if entry["filename"].endswith(".whl")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    add_round_options(parser)
    parser.add_argument("--downloads", choices=("redirect", "stream"), default="redirect")
    args = parser.parse_args()
    paths = main_corpus_paths()
    cfg = load.LoadConfig(2, args.connections, args.duration)
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="teamindex-bench-scaleout-") as tmp:
        root = Path(tmp)
        data_dir, log = seeded_data_dir(root, paths), root / "server.log"
        cluster = pg_support.start_cluster()
        store = start_seaweedfs(root / "seaweedfs")
        try:
            url_pg = cluster.empty_database()
            s3_env = store.env() | {
                "TEAMINDEX_STORAGE": f"s3://{BUCKET}/bench/",
                "TEAMINDEX_S3_DOWNLOADS": args.downloads,
            }
            print(migrate(data_dir, url_pg, s3_env["TEAMINDEX_STORAGE"], store.env()), flush=True)
            n = args.workers
            setups = [
                (f"SQLite + disk, {n} workers", "", {}),
                (f"PostgreSQL + S3 ({args.downloads}), {n} workers", url_pg, s3_env),
            ]
            before = os.getloadavg()
            for round_ in range(args.rounds):
                for label, database_url, env in setups if round_ % 2 == 0 else setups[::-1]:
                    process, url = start(data_dir, n, log, database_url, env)
                    try:
                        wheel = a_wheel_of_the_big_project(url)
                        download = url.replace("/simple/", f"/files/{corpus.BIG_PROJECT}/{wheel}")
                        expected = 302 if env and args.downloads == "redirect" else 200
                        status = peers.http_get(download, auth())[0]
                        assert status == expected, (label, status)
                        targets = [*page_targets(url), ("download", download)]
                        measure(targets, label, cfg, rates, round_)
                    finally:
                        stop(process)
            after = os.getloadavg()
        finally:
            store.stop()
            cluster.stop()
    (first, _u, _e), (second, _u2, _e2) = setups
    print(f"\n| endpoint | {first}, req/s | {second}, req/s | ratio |")
    print("| --- | --- | --- | --- |")
    for name in ENDPOINTS:
        one = statistics.median(rates[(name, first)])
        other = statistics.median(rates[(name, second)])
        print(f"| {name} | {one:,.0f} | {other:,.0f} | {other / one:.2f}x |")
    print(rounds_footer(args, before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
