"""The 100 KB wheel from plain `serve`, behind nginx and behind Caddy, in one run.

    python bench/fronts.py [--rounds 3] [--duration 10] [--connections 16]

Each configuration is the one the README documents: `serve --accel-redirect /_protected/
--trusted-proxy 127.0.0.1` with the output of `teamindex nginx-config` or `teamindex
caddy-config` in front (bench/peers.py start_teamindex_front), or plain `serve`; default
workers (one per core) everywhere, the same wheel, the same wrk load (-t2 -c16, Basic auth
on every request). nginx keeps teamindex's yes for 5 s, so repeats cost no Python request;
core Caddy keeps nothing, so each download is one bodiless teamindex answer and Caddy
sends the bytes. The machine is shared: the three take turns, round after round, and the
table gives medians and the load average around the run.
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
from workers import PASSWORD, USER, add_round_options, auth, rounds_footer, start, stop

MODES = ("serve", "nginx", "caddy")


class HereTeamindex(peers.TeamindexPeer):
    """teamindex from the interpreter running this script (the checkout's .venv)."""

    @property
    def venv(self) -> Path:
        return Path(sys.prefix)


def measure_round(
    mode: str, wheel: Path, root: Path, cfg: load.LoadConfig, round_: int
) -> load.LoadResult:
    """Start `mode` on a fresh data dir holding `wheel`, load its file URL, stop it."""
    run_dir = root / f"{mode}-{round_}"
    peer = HereTeamindex("teamindex", "teamindex", PASSWORD)
    if mode == "serve":
        data_dir = run_dir / "data"
        data_dir.mkdir(parents=True)
        peer._cli("adduser", USER, "--password-stdin", "--data", data_dir, stdin=PASSWORD)
        peer._cli("import", "--quiet", "--data", data_dir, wheel)
        process, url = start(data_dir, len(os.sched_getaffinity(0)), run_dir / "serve.log")
        servers = [process]
    else:
        teamindex, front = peers.start_teamindex_front(peer, wheel, run_dir, PASSWORD, mode)
        url, servers = front.index_url, [front.proc, teamindex.proc]
    try:
        target = url.replace("/simple/", f"/files/{corpus.LARGE_WHEEL_PROJECT}/{wheel.name}")
        status = peers.http_get(target, auth())[0]
        assert status == 200, (mode, status)
        return load.run_load(target, auth(), cfg)
    finally:
        for process in servers:
            stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_round_options(parser)
    args = parser.parse_args()
    assert USER == peers.USER
    cfg = load.LoadConfig(2, args.connections, args.duration)
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="teamindex-bench-fronts-") as tmp:
        root = Path(tmp)
        dist = corpus.Dist(
            corpus.LARGE_WHEEL_PROJECT, "1.0.0", "wheel", payload_bytes=corpus.LARGE_WHEEL_BYTES
        )
        (root / "dists").mkdir()
        wheel = corpus.build_wheel(dist, root / "dists")
        size = wheel.stat().st_size
        before = os.getloadavg()
        for round_ in range(args.rounds):
            for mode in MODES if round_ % 2 == 0 else tuple(reversed(MODES)):
                result = measure_round(mode, wheel, root, cfg, round_)
                rates.setdefault(mode, []).append(result.rps)
                print(
                    f"round {round_ + 1}, {mode}: {result.rps:,.0f} req/s, p50 "
                    f"{result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        after = os.getloadavg()
    print(f"\n| 100 KB wheel ({size:,} bytes) | req/s | vs plain serve |")
    print("| --- | --- | --- |")
    plain = statistics.median(rates["serve"])
    for mode in MODES:
        rate = statistics.median(rates[mode])
        label = "plain serve" if mode == "serve" else f"behind {mode}"
        print(f"| {label} | {rate:,.0f} | {rate / plain:.2f}x |")
    print(rounds_footer(args, before, after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
