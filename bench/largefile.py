"""The 200 MiB download, before and after (issue 14: "the 200 MiB download unchanged or better").

    python bench/largefile.py --baseline /tmp/base     # this tree against another tree's code
    python bench/largefile.py --rounds 7 --mib 200

`bench/run.py` measures the large download once per server in a 30-minute run, with whatever
else the machine does at that moment; one figure there says little about a change. This script
measures only that download, in alternating rounds, so other load hits every configuration
alike: `serve` of this tree, `serve` of `--baseline` (a `git archive` export of an older commit:
its own data dir, imported with its own CLI), this tree behind `teamindex nginx-config`'s front,
and nginx serving the file statically (the ceiling). Each download is curl to /dev/null with
Basic auth; the median MiB/s per configuration is printed as JSON lines, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import clients  # noqa: E402
import corpus  # noqa: E402
import peers  # noqa: E402
from coldstart import cli  # noqa: E402

PASSWORD = "largefile-password-1"
CACHE_DIR = BENCH / ".cache"


def serve_tree(python: str, src: Path, wheel: Path, run_dir: Path) -> peers.ServerHandle:
    """`teamindex serve` of the tree at `src` on a data dir holding `wheel` (its own CLI)."""
    data = run_dir / "data"
    data.mkdir(parents=True)
    cli(python, src, "adduser", peers.USER, "--admin", "--password-stdin", "--data-dir",
        str(data), stdin=PASSWORD)  # fmt: skip
    cli(python, src, "import", "--quiet", "--data-dir", str(data), str(wheel))
    port = peers.free_port()
    proc = subprocess.Popen(
        [python, "-m", "teamindex", "serve", "--data-dir", str(data), "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    handle = peers.ServerHandle(src.name, proc, base, f"{base}/simple/", "", run_dir / "log")
    try:
        peers.wait_for_status(f"{base}/simple/", {}, proc, 60, want=401)
    except BaseException:
        handle.stop()
        raise
    return handle


def file_url(handle: peers.ServerHandle, wheel: Path) -> str:
    """The download URL the project page links for `wheel`."""
    auth = {"Authorization": peers.basic_auth_header(peers.USER, PASSWORD)}
    return clients.find_file(handle.index_url, corpus.HUGE_WHEEL_PROJECT, wheel.name, auth).url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, help="another tree whose teamindex/ is compared")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--mib", type=int, default=200)
    p.add_argument("--no-nginx", action="store_true", help="skip the front and static rows")
    args = p.parse_args(argv)
    wheel = corpus.generate_huge_wheel(CACHE_DIR / "corpus" / f"huge-{args.mib}", args.mib)
    size = wheel.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="largefile-"))
    work.chmod(0o755)  # nginx's workers (not root) read the static row's file through it
    handles: list[peers.ServerHandle] = []
    targets: dict[str, Callable[[], dict[str, float]]] = {}
    try:
        here = serve_tree(sys.executable, BENCH.parent, wheel, work / "this")
        handles.append(here)
        url = file_url(here, wheel)
        targets["serve (this tree)"] = lambda: clients.curl_download(url, PASSWORD, here.pid, size)
        if args.baseline:
            base = serve_tree(sys.executable, args.baseline.resolve(), wheel, work / "baseline")
            handles.append(base)
            base_url = file_url(base, wheel)
            targets["serve (baseline)"] = lambda: clients.curl_download(
                base_url, PASSWORD, base.pid, size
            )
        if not args.no_nginx and peers.nginx_version() is not None:
            peer = peers.TeamindexPeer("teamindex", "teamindex", PASSWORD)
            peer.install()
            _app, front = peers.start_teamindex_front(peer, wheel, work / "front", PASSWORD)
            handles += [_app, front]
            front_url = file_url(front, wheel)
            targets["behind its nginx front"] = lambda: clients.curl_download(
                front_url, PASSWORD, None, size
            )
            root = work / "static"
            peers.link_tree([wheel], root)
            static = peers.start_nginx(root, work / "nginx", PASSWORD)
            handles.append(static)
            static_url = f"{static.base_url}/{wheel.name}"
            targets["nginx static"] = lambda: clients.curl_download(
                static_url, PASSWORD, None, size
            )
        runs: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, download in targets.items():  # alternated: load hits each alike
                runs[name].append(download()["mib_per_s"])
    finally:
        for handle in handles:
            handle.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, rates in runs.items():
        print(json.dumps({
            "config": name, "mib": args.mib, "median_mib_s": round(statistics.median(rates)),
            "min": round(min(rates)), "max": round(max(rates)), "rounds": len(rates),
            "loadavg": round(os.getloadavg()[0], 2),
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
