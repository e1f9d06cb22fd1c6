"""Peer mode of bench/proxy.py: one loopback upstream, several proxies, one table.

Per server, in one run and with the same load generator: the cold page (first request of a
project, median over N projects never asked before), the cold file (first download of that
project's wheel), the warm page rate (a 60-file page already cached) and the warm file rate
(a wheel already cached). teamindex adds its hosted page and hosted file as the "local"
reference. Reports go to bench/results/proxy-latest.md and proxy-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builders import make_wheel
from load import LoadConfig, LoadResult, have_wrk, run_load
from peers import BenchError
from proxypeers import (
    DevpiMirror,
    PeryxPeer,
    ProxpiPeer,
    ProxyHandle,
    ProxyPeer,
    TeamindexProxy,
    bulk_up,
    fetch_ok,
    first_file_url,
    serve_upstream,
)
from upstream_support import FakeUpstream

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
LOCAL_PROJECT = "localproj"
COLD_SLACK_MS = 20.0


@dataclass
class ServerResult:
    """What one proxy achieved (None where a step failed; the reason is in ``error``)."""

    version: str = ""
    cold_page_ms: float | None = None
    cold_file_ms: float | None = None
    warm_page: LoadResult | None = None
    warm_file: LoadResult | None = None
    local_page: LoadResult | None = None
    local_file: LoadResult | None = None
    page_type: str = ""
    upstream_during_warm: int | None = None
    page_wire: str = ""
    load_before: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)


def timed(url: str, headers: dict[str, str]) -> tuple[float, dict[str, str], bytes]:
    """One GET on a new connection that must answer 200: (ms, headers, body).

    Right after a load run the server may still hold the generator's connections, and
    teamindex caps one address at 16 (serving.CONNECTIONS_PER_ADDRESS): a reset then means
    "wait", so it is retried for a few seconds; each attempt is timed on its own."""
    for _ in range(40):
        started = time.perf_counter()
        try:
            hdrs, body = fetch_ok(url, headers)
        except ConnectionResetError:
            time.sleep(0.25)
            continue
        return (time.perf_counter() - started) * 1000, hdrs, body
    raise BenchError(f"GET {url}: connection reset for 10 s")


def loaded(url: str, headers: dict[str, str], cfg: LoadConfig) -> LoadResult:
    """run_load once the previous run's connections are gone (one plain GET gets through)."""
    timed(url, headers)
    time.sleep(1.0)  # and the rest of them: a 17th connection from here would be reset
    return run_load(url, headers, cfg)


def load1() -> float:
    """The one-minute load average (the machine is shared)."""
    return os.getloadavg()[0]


def warm_name(key: str) -> str:
    """Each server's own warm project, so that upstream requests can be told apart."""
    return f"warm-{key}"


def build_upstream(
    work: Path, keys: list[str], files: int, cold: int, padding: int
) -> FakeUpstream:
    """The synthetic upstream: a page of ``files`` wheels per server, ``cold`` one-wheel
    projects shared by all (each server starts with an empty cache)."""
    fake = FakeUpstream()
    names = [(warm_name(key), f"1.{n}") for key in keys for n in range(files)]
    names += [(f"cold-{n}", "1.0") for n in range(cold)]
    for name, version in names:
        item = fake.publish(work / "up", name, version)
        item.data = bulk_up(work / "up" / item.filename, padding)
    return fake


def upstream_asked(fake: FakeUpstream, key: str) -> int:
    """Requests upstream saw for one server's warm project (page path or wheel filename)."""
    name = warm_name(key)
    return fake.count(name) + fake.count(name.replace("-", "_"))


def measure_cold(handle: ProxyHandle, names: list[str], result: ServerResult) -> None:
    """First page request of each never-seen project, then the first download of its file."""
    headers = {**handle.headers, "Accept": PIP_ACCEPT}
    pages, files = [], []
    for name in names:
        url = handle.page_url(name)
        ms, hdrs, body = timed(url, headers)
        pages.append(ms)
        result.page_type = hdrs.get("content-type", "").split(";")[0]
        file_ms, _, _ = timed(
            first_file_url(url, hdrs.get("content-type", ""), body), handle.headers
        )
        files.append(file_ms)
    result.cold_page_ms = statistics.median(pages)
    result.cold_file_ms = statistics.median(files)


Job = tuple[str, str, dict[str, str]]  # (metric, url, headers)


def prime(
    handle: ProxyHandle, project: str, sizes: dict[str, int], result: ServerResult
) -> list[Job]:
    """Fetch a page and its first file twice (so both are cached); the two load jobs. The
    file must be whole: the size the page lists (PEP 700), else upstream's."""
    page_headers = {**handle.headers, "Accept": PIP_ACCEPT, "Accept-Encoding": "gzip, deflate"}
    url = handle.page_url(project)
    _, wire_hdrs, wire = timed(url, page_headers)
    if project != LOCAL_PROJECT:
        result.page_wire = f"{len(wire):,} B {wire_hdrs.get('content-encoding', 'identity')}"
    _, hdrs, body = timed(url, {**handle.headers, "Accept": PIP_ACCEPT})
    file_url = first_file_url(url, hdrs.get("content-type", ""), body)
    timed(file_url, handle.headers)
    _, _, data = timed(file_url, handle.headers)
    size = sizes.get(file_url.rsplit("/", 1)[-1])
    if "json" in hdrs.get("content-type", ""):
        size = json.loads(body)["files"][0].get("size", size)
    if len(data) != size:
        raise BenchError(f"{file_url}: {len(data)} bytes, expected {size}")
    kind = "local" if project == LOCAL_PROJECT else "warm"
    return [(f"{kind}_page", url, page_headers), (f"{kind}_file", file_url, handle.headers)]


def median_load(runs: list[LoadResult]) -> LoadResult:
    """The round with the median rate (p99 and errors from that same round; errors summed)."""
    ordered = sorted(runs, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    return LoadResult(
        middle.rps, middle.p50_ms, middle.p99_ms, middle.requests,
        sum(r.errors for r in runs), middle.tool,
    )  # fmt: skip


def make_peers(keys: list[str]) -> list[ProxyPeer]:
    """The requested peers, in the order given."""
    python = Path(sys.executable)
    repo_python = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    known: dict[str, ProxyPeer] = {
        "teamindex": TeamindexProxy(
            "teamindex", python=repo_python if repo_python.exists() else python
        ),
        "devpi": DevpiMirror("devpi"),
        "proxpi": ProxpiPeer("proxpi"),
        "peryx": PeryxPeer("peryx"),
    }
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise SystemExit(f"unknown peers: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[key] for key in keys]


def failed(result: ServerResult, exc: Exception) -> None:
    """Record a step's failure with the bench frames it came through."""
    where = [f for f in traceback.extract_tb(exc.__traceback__) if "bench" in f.filename]
    frames = " < ".join(f"{f.name}:{f.lineno}" for f in reversed(where))
    result.error = f"{type(exc).__name__}: {str(exc)[-600:]} (at {frames})"


STEP_ERRORS = (BenchError, OSError, ValueError, KeyError)


def start_one(
    peer: ProxyPeer, upstream: FakeUpstream, work: Path, args: argparse.Namespace
) -> tuple[ServerResult, ProxyHandle | None]:
    """Install and start one proxy with an empty cache; a failure is recorded, not raised."""
    result = ServerResult(load_before=load1())
    try:
        result.version = peer.install()
        peer_work = work / peer.key
        peer_work.mkdir()
        if isinstance(peer, TeamindexProxy):
            local = peer_work / "local"
            local.mkdir()
            for number in range(args.files):
                bulk_up(make_wheel(local, LOCAL_PROJECT, f"1.{number}"), args.padding)
            peer.prepare(peer_work, local)
        return result, peer.start(upstream.url, peer_work)
    except STEP_ERRORS as exc:
        failed(result, exc)
        return result, None


def measure_all(
    peers: list[ProxyPeer], upstream: FakeUpstream, work: Path, args: argparse.Namespace
) -> dict[str, ServerResult]:
    """All servers run at once; cold figures one server after the other, then the load runs
    in rounds (every server's page and file once per round), so that a shared machine's
    changing load falls on all of them alike; each figure is the median round."""
    cfg = LoadConfig(args.threads, args.connections, args.duration)
    sizes = {f.filename: len(f.data) for files in upstream.projects.values() for f in files}
    results: dict[str, ServerResult] = {}
    handles: dict[str, ProxyHandle] = {}
    try:
        for peer in peers:
            print(f"[proxy-bench] starting {peer.key}", file=sys.stderr, flush=True)
            results[peer.key], handle = start_one(peer, upstream, work, args)
            if handle is not None:
                handles[peer.key] = handle
        jobs: dict[str, list[Job]] = {}
        for key, handle in handles.items():
            try:
                if key == "teamindex":  # its first Basic auth hashes the password: not timed
                    timed(handle.page_url(LOCAL_PROJECT), handle.headers)
                measure_cold(handle, [f"cold-{n}" for n in range(args.cold)], results[key])
                before = upstream_asked(upstream, key)
                jobs[key] = prime(handle, warm_name(key), sizes, results[key])
                if key == "teamindex":
                    jobs[key] += prime(handle, LOCAL_PROJECT, sizes, results[key])
                results[key].upstream_during_warm = -before
            except STEP_ERRORS as exc:
                failed(results[key], exc)
        time.sleep(0.5)  # a background cache write finishes before the load
        runs: dict[tuple[str, str], list[LoadResult]] = {}
        for number in range(args.rounds):
            print(f"[proxy-bench] round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for key, key_jobs in jobs.items():
                if results[key].error:
                    continue
                results[key].load_before = max(results[key].load_before, load1())
                for metric, url, headers in key_jobs:
                    try:
                        runs.setdefault((key, metric), []).append(loaded(url, headers, cfg))
                    except STEP_ERRORS as exc:
                        failed(results[key], exc)
        for (key, metric), loads in runs.items():
            setattr(results[key], metric, median_load(loads))
        for key in jobs:
            asked = results[key].upstream_during_warm or 0
            results[key].upstream_during_warm = asked + upstream_asked(upstream, key)
    finally:
        for handle in handles.values():
            handle.stop()
    for peer in peers:
        results[peer.key].notes = peer.notes
    return results


def rps(load: LoadResult | None) -> float | None:
    """Requests per second of a load result, if any."""
    return None if load is None else load.rps


def fmt(value: float | None, unit: str = "") -> str:
    """A table cell."""
    if value is None:
        return "—"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    return text + unit


def targets(results: dict[str, ServerResult], upstream_ms: float) -> list[tuple[str, str, bool]]:
    """The issue's targets for teamindex, each as (what, figures, met)."""
    team = results.get("teamindex")
    rows: list[tuple[str, str, bool]] = []
    if team is None or team.error:
        return rows
    warm, local = rps(team.warm_page), rps(team.local_page)
    if warm and local:
        figures = f"{warm:,.0f} / {local:,.0f} = {warm / local:.0%}"
        rows.append(("warm proxied page >= 80% of a local page", figures, warm >= 0.8 * local))
    peers = [rps(r.warm_page) for k, r in results.items() if k != "teamindex"]
    best = max((p for p in peers if p), default=None)
    if warm and best:
        figures = f"{warm:,.0f} / {best:,.0f} = {warm / best:.1f}x"
        rows.append(("warm proxied page >= 3x the best peer", figures, warm >= 3 * best))
    cached, hosted = rps(team.warm_file), rps(team.local_file)
    if cached and hosted:
        figures = f"{cached:,.0f} / {hosted:,.0f} = {cached / hosted:.0%}"
        what = "warm cached file at local download speed (>= 90% of hosted)"
        rows.append((what, figures, cached >= 0.9 * hosted))
    if team.cold_page_ms is not None:
        limit = upstream_ms + COLD_SLACK_MS
        figures = f"{team.cold_page_ms:.1f} ms vs {upstream_ms:.1f} + 20 = {limit:.1f} ms"
        what = "cold page <= upstream round trip + 20 ms"
        rows.append((what, figures, team.cold_page_ms <= limit))
    return rows


def render(
    results: dict[str, ServerResult],
    upstream: dict[str, float],
    meta: dict[str, str],
) -> str:
    """The Markdown report."""
    keys = list(results)
    head = "| metric | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys)
    lines = [f"# teamindex proxy benchmark — {meta['stamp']}", "", f"Command: `{meta['command']}`",
             "", head]  # fmt: skip

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    get = results.__getitem__
    row("version", [get(k).version or "—" for k in keys])
    row("cold page, first request, median ms ↓", [fmt(get(k).cold_page_ms) for k in keys])
    row("cold file, first download, median ms ↓", [fmt(get(k).cold_file_ms) for k in keys])
    row("warm page (60 files) req/s ↑", [fmt(rps(get(k).warm_page)) for k in keys])
    row("warm page p99 ms ↓", [fmt(get(k).warm_page and get(k).warm_page.p99_ms) for k in keys])
    row("warm cached file req/s ↑", [fmt(rps(get(k).warm_file)) for k in keys])
    row(
        "warm cached file p99 ms ↓",
        [fmt(get(k).warm_file and get(k).warm_file.p99_ms) for k in keys],
    )
    row("local (hosted) page req/s ↑", [fmt(rps(get(k).local_page)) for k in keys])
    row("local (hosted) file req/s ↑", [fmt(rps(get(k).local_file)) for k in keys])
    row(
        "upstream requests for the warm project (2 are the misses)",
        [str(get(k).upstream_during_warm) for k in keys],
    )
    row("warm page on the wire (Accept-Encoding: gzip)", [get(k).page_wire or "—" for k in keys])
    row("page type served to pip's Accept", [get(k).page_type or "—" for k in keys])
    errors = []
    for k in keys:
        loads = [get(k).warm_page, get(k).warm_file, get(k).local_page, get(k).local_file]
        errors.append(str(sum(x.errors for x in loads if x)))
    row("load errors (non-2xx, socket)", errors)
    row("highest 1-min load average seen", [f"{get(k).load_before:.2f}" for k in keys])
    lines += ["", "↑ higher is better, ↓ lower is better.", "",
              f"Upstream round trip (direct, new connection, median): page "
              f"{upstream['page_ms']:.1f} ms, file {upstream['file_ms']:.1f} ms.", "",
              "## Targets (teamindex)", "", "| target | figures | met |",
              "|---|---|---|"]  # fmt: skip
    for what, figures, met in targets(results, upstream["page_ms"]):
        lines.append(f"| {what} | {figures} | {'yes' if met else '**no**'} |")
    lines += ["", "## Setup", ""]
    lines += [f"- {line}" for line in meta["setup"].splitlines()]
    failures = [(k, r.error) for k, r in results.items() if r.error]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {k}: `{err.splitlines()[0] if err else ''}`" for k, err in failures]
    notes = [(k, n) for k, r in results.items() for n in r.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {k}: {n}" for k, n in notes]
    return "\n".join(lines) + "\n"


def run_peer_mode(args: argparse.Namespace) -> int:
    """Entry point from bench/proxy.py --peers."""
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    peers = make_peers(keys)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="teamindex-proxy-peers-"))
    started = time.perf_counter()
    load_start = load1()
    try:
        fake = build_upstream(work, keys, args.files, args.cold, args.padding)
        served = serve_upstream(fake)
        try:
            accept = {"Accept": PIP_ACCEPT}
            page_ms = statistics.median(
                timed(f"{served.url}cold-{n}/", accept)[0] for n in range(args.cold)
            )
            wheels = [fake.projects[f"cold-{n}"][0].filename for n in range(args.cold)]
            base = served.url.removesuffix("simple/")
            file_ms = statistics.median(timed(f"{base}files/{w}", {})[0] for w in wheels)
            size = len(fake.projects[warm_name(keys[0])][0].data)
            results = measure_all(peers, fake, work, args)
        finally:
            served.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    tool = "wrk" if have_wrk() else "python load generator (bench/load.py)"
    setup = (
        f"upstream: a static PEP 691/503 index on loopback (waitress, 8 threads, in the bench "
        f"process); {args.files} wheels of {size:,} bytes on the warm page, {args.cold} cold "
        f"projects\n"
        f"load: {tool} -t{args.threads} -c{args.connections} -d{args.duration:g}s per figure, "
        f"{args.rounds} rounds over all servers (running at once), median round; cold figures "
        f"on a new connection each, one server after the other\n"
        f"auth: teamindex (user alice) and peryx (a read token, anonymous read off) get HTTP "
        f"Basic auth on every request; devpi-server 6.20 (no read ACL) and proxpi (no auth) "
        f"are read anonymously\n"
        f"1-min load average at start {load_start:.2f}, at end {load1():.2f} "
        f"(nproc {os.cpu_count()}; the machine is shared with other jobs: compare within this run)"
    )
    command = "python bench/proxy.py " + " ".join(sys.argv[1:])
    meta = {"stamp": stamp, "command": command, "setup": setup}
    upstream = {"page_ms": page_ms, "file_ms": file_ms}
    report = render(results, upstream, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "stamp": stamp,
        "command": command,
        "total_s": round(time.perf_counter() - started, 1),
        "upstream": upstream,
        "load_average": {"start": load_start, "end": load1()},
        "results": {k: asdict(r) for k, r in results.items()},
        "targets": [{"what": w, "figures": f, "met": m} for w, f, m in targets(results, page_ms)],
    }
    (args.out / f"proxy-{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "proxy-latest.md").write_text(report)
    print(report)
    return 0
