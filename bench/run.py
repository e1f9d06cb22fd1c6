"""teamindex benchmark: one machine, one run, every server measured the same way.

Usage::

    python bench/run.py [--quick] [--large] [--out bench/results/] [--servers teamindex,devpi]

See bench/README.md for what each metric means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import clients
import corpus
import importspeed
import load
import peers

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
PASSWORD = os.environ.get("BENCH_PASSWORD", "bench-pw-4f1c9a")
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"

PEER_KEYS = ("teamindex", "pypiserver", "pypiserver-cached", "devpi", "peryx")
PEER_LABELS = {
    "teamindex": "teamindex",
    "pypiserver": "pypiserver",
    "pypiserver-cached": "pypiserver cached-dir",
    "devpi": "devpi",
    "peryx": "peryx",
    "nginx": "nginx",
    "front": "teamindex + nginx",
    "caddy-front": "teamindex + caddy",
}
COLUMNS = (*PEER_KEYS, "front", "caddy-front", "nginx")
FRONT_COLUMNS = {"nginx": "front", "caddy": "caddy-front"}


@dataclass(frozen=True)
class Metric:
    """One row of the result table."""

    key: str
    label: str
    higher_is_better: bool
    digits: int = 1


def _read_metrics(prefix: str, label: str) -> list[Metric]:
    """The three rows of one load-tested endpoint."""
    return [
        Metric(f"{prefix}_rps", f"{label} req/s", True),
        Metric(f"{prefix}_p50_ms", f"{label} p50 ms", False, 2),
        Metric(f"{prefix}_p99_ms", f"{label} p99 ms", False, 2),
    ]


METRICS: list[Metric] = [
    *_read_metrics("simple_root", "GET /simple/"),
    *_read_metrics("project_html", "GET /simple/big-project/ (300 files) HTML"),
    *_read_metrics("project_json", "same page, PEP 691 JSON"),
    *_read_metrics("metadata", "GET PEP 658 .metadata"),
    *_read_metrics("wheel_100k", "GET ~100 KB wheel"),
    Metric("upload_files_per_s", "twine upload N files sequential, files/s", True, 2),
    Metric("upload_seconds", "twine upload N files, total s", False, 1),
    Metric("upload_peak_rss_mib", "server peak RSS during that upload, MiB", False, 1),
    Metric("huge_upload_mib_s", "200 MiB wheel upload MiB/s", True, 1),
    Metric("huge_upload_rss_growth_mib", "server RSS growth during 200 MiB upload, MiB", False, 1),
    Metric("huge_download_mib_s", "200 MiB wheel download MiB/s", True, 1),
    Metric(
        "huge_download_rss_growth_mib", "server RSS growth during 200 MiB download, MiB", False, 1
    ),
    Metric("loadavg", "1-min load average when the server's turn began", False, 2),
    Metric("cold_start_s", "cold start to first 200 on /simple/ (median), s", False, 2),
    Metric("uv_install_s", "uv pip install chain-0 (10 pkgs), cold cache, median, s", False, 2),
    Metric("poetry_lock_s", "poetry lock chain-0..9, explicit source, median, s", False, 2),
    Metric("rss_end_mib", "server RSS at end of its run, MiB", False, 1),
    Metric("load_s", "corpus load into the server (import/copy/upload), s", False, 1),
    Metric("import_files_per_s", "bulk import of N ~100 KB wheels, files/s", True, 0),
]


@dataclass
class Results:
    """Measured values (metric -> peer -> number), plus free-form notes."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def put(self, metric: str, peer: str, value: float) -> None:
        """Record one value."""
        self.values.setdefault(metric, {})[peer] = value

    def note(self, text: str) -> None:
        """Record a note and echo it."""
        self.notes.append(text)
        log(f"NOTE: {text}")


@dataclass
class Context:
    """Everything a peer measurement needs."""

    args: argparse.Namespace
    load_cfg: load.LoadConfig
    main_files: list[Path]
    fill_files: list[Path]
    subset_files: list[Path]
    upload_files: list[Path]
    huge_wheel: Path
    large_wheel: Path
    chain: list[str]
    cold_files: int
    corpus_key: str
    run_root: Path


def log(msg: str) -> None:
    """Progress output on stderr (stdout keeps the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shorten(text: str, limit: int = 900) -> str:
    """Keep the head and the tail of a long error message (the tail names the cause)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} … {text[-half:]}"


def step(results: Results, peer: str, what: str, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure becomes a note instead of aborting the run."""
    log(f"{peer}: {what}")
    try:
        fn()
    except (peers.BenchError, OSError, RuntimeError, ValueError, KeyError) as exc:
        results.note(f"{peer}: {what} failed: {shorten(str(exc))}")


# --------------------------------------------------------------------------- corpus


def build_corpus(
    args: argparse.Namespace,
) -> tuple[corpus.CorpusSpec, corpus.Corpus, corpus.Corpus, corpus.Corpus]:
    """Generate (or reuse) the main corpus, the cold-start filler and the upload set."""
    spec = corpus.CorpusSpec(projects=10_000, versions=5) if args.large else corpus.CorpusSpec()
    root = CACHE_DIR / "corpus"
    main = corpus.generate(corpus.main_corpus_dists(spec), root / f"main-{spec.key()}")
    # The cold-start store holds cold_files files: more versions of the same projects, so
    # the project count (and thus the /simple/ page) stays the same.
    missing = max(0, args.cold_files - len(main.files))
    extra_versions = math.ceil(missing / (2 * spec.projects)) if missing else 0
    fill_dists = corpus.regular_dists(
        spec.prefix, spec.projects, extra_versions, first_version=spec.versions
    )
    fill = corpus.generate(fill_dists, root / f"fill-{spec.key()}-{extra_versions}")
    uploads = corpus.generate(
        corpus.upload_dists(args.upload_count), root / f"upload-{args.upload_count}"
    )
    return spec, main, fill, uploads


def subset_of(main: corpus.Corpus, spec: corpus.CorpusSpec) -> list[Path]:
    """One file per regular project plus every special project: what the reads need."""
    seen: set[str] = set()
    picked: list[Path] = []
    for fname in main.files:
        name = fname.split("-", 1)[0]
        if not name.startswith(spec.prefix.replace("-", "_")) or name not in seen:
            picked.append(main.root / fname)
            seen.add(name)
    return picked


# --------------------------------------------------------------------------- per-peer


def make_peer(key: str, args: argparse.Namespace) -> peers.Peer:
    """Instantiate the peer called ``key``."""
    if key == "teamindex":
        return peers.TeamindexPeer(key, PEER_LABELS[key], PASSWORD, threads=args.teamindex_threads)
    if key == "pypiserver":
        return peers.PypiserverPeer(key, PEER_LABELS[key], PASSWORD, backend="simple-dir")
    if key == "pypiserver-cached":
        return peers.PypiserverPeer(
            key,
            PEER_LABELS[key],
            PASSWORD,
            backend="cached-dir",
            extra_args=("--hash-algo", "sha256"),
        )
    if key == "devpi":
        return peers.DevpiPeer(key, PEER_LABELS[key], PASSWORD)
    if key == "peryx":
        return peers.PeryxPeer(key, PEER_LABELS[key], PASSWORD)
    raise ValueError(f"unknown server {key!r}")


def load_store(peer: peers.Peer, ctx: Context, store: Path, results: Results) -> None:
    """Load the corpus into ``store``, reusing a cached loaded store when the peer allows."""
    main, fill = ctx.main_files, ctx.fill_files
    if isinstance(peer, peers.DevpiPeer) and not ctx.args.devpi_full:
        main, fill = ctx.subset_files, []
        results.note(
            f"devpi: only a subset was uploaded ({len(main)} files: one per project, "
            "plus big-project, large-wheel and the chain); "
            "its cold start therefore stores fewer files than the others"
        )
    peer_key = peer.store_cache_key()
    if peer_key is None or ctx.args.no_store_cache:
        start = time.perf_counter()
        peer.load(main, fill, store)
        results.put("load_s", peer.key, time.perf_counter() - start)
        return
    cached = CACHE_DIR / "stores" / f"{peer_key}-{ctx.corpus_key}-{len(main)}-{len(fill)}"
    marker = cached / "complete.json"
    if not marker.exists():
        # A new key means new code or a new corpus: drop this peer's older stores.
        for old in cached.parent.glob(f"{peer_key.split('-', 1)[0]}-*"):
            shutil.rmtree(old, ignore_errors=True)
        cached.mkdir(parents=True)
        start = time.perf_counter()
        peer.load(main, fill, cached)
        marker.write_text(json.dumps({"load_s": time.perf_counter() - start}))
    else:
        log(f"{peer.key}: reusing loaded store {cached.name}")
    results.put("load_s", peer.key, json.loads(marker.read_text())["load_s"])
    shutil.copytree(cached, store, symlinks=True, ignore=shutil.ignore_patterns("complete.json"))


def check_url(url: str, headers: dict[str, str], want_type: str | None = None) -> str | None:
    """Return why ``url`` cannot be load-tested, or None when it answers 200 (of ``want_type``)."""
    status, hdrs, _ = peers.http_get(url, headers)
    if status != 200:
        return f"answered {status}"
    if want_type and want_type not in hdrs.get("content-type", ""):
        return f"answered Content-Type {hdrs.get('content-type')!r}, not {want_type}"
    return None


def measure_endpoint(
    results: Results,
    peer: str,
    prefix: str,
    url: str,
    headers: dict[str, str],
    ctx: Context,
    want_type: str | None = None,
) -> None:
    """Load-test one URL and record req/s, p50 and p99."""
    problem = check_url(url, headers, want_type)
    if problem:
        results.note(f"{peer}: {prefix} not measured: {url} {problem}")
        return
    res = load.run_load(url, headers, ctx.load_cfg, force_python=ctx.args.python_load)
    if res.requests == 0:
        results.note(f"{peer}: {prefix}: no request completed in {ctx.load_cfg.duration_s:g} s")
        results.put(f"{prefix}_rps", peer, 0.0)
        return
    if res.errors:
        results.note(
            f"{peer}: {prefix}: {res.errors} of {res.requests} requests failed or timed out"
        )
    results.put(f"{prefix}_rps", peer, res.rps)
    results.put(f"{prefix}_p50_ms", peer, res.p50_ms)
    results.put(f"{prefix}_p99_ms", peer, res.p99_ms)


def check_read_protection(results: Results, peer: str, handle: peers.ServerHandle) -> None:
    """Note when a server serves its index to a request without credentials."""
    status, _, _ = peers.http_get(handle.index_url, {"Accept": "text/html"})
    if status == 200:
        results.note(
            f"{peer}: serves {handle.index_url} without credentials (reads are not protected); "
            "the benchmark still sends Basic auth on every request"
        )


def measure_reads(
    results: Results, peer: peers.Peer, handle: peers.ServerHandle, ctx: Context
) -> None:
    """The five load-tested read endpoints, all with Basic auth."""
    check_read_protection(results, peer.key, handle)
    auth = peer.auth_headers()
    html = {**auth, "Accept": "text/html"}
    project_url = f"{handle.index_url}{corpus.BIG_PROJECT}/"
    step(
        results,
        peer.key,
        "GET /simple/",
        lambda: measure_endpoint(results, peer.key, "simple_root", handle.index_url, html, ctx),
    )
    step(
        results,
        peer.key,
        "project page HTML",
        lambda: measure_endpoint(results, peer.key, "project_html", project_url, html, ctx),
    )
    json_headers = {**auth, "Accept": JSON_ACCEPT}
    step(
        results, peer.key, "project page JSON",
        lambda: measure_endpoint(
            results, peer.key, "project_json", project_url, json_headers, ctx, JSON_ACCEPT
        ),
    )  # fmt: skip
    link = clients.find_file(
        handle.index_url, corpus.LARGE_WHEEL_PROJECT, ctx.large_wheel.name, auth
    )
    if link.has_metadata:
        step(
            results,
            peer.key,
            ".metadata",
            lambda: measure_endpoint(
                results, peer.key, "metadata", link.url + ".metadata", auth, ctx
            ),
        )
    else:
        results.note(f"{peer.key}: does not advertise PEP 658 metadata; .metadata not measured")
    step(
        results,
        peer.key,
        "~100 KB wheel",
        lambda: measure_endpoint(results, peer.key, "wheel_100k", link.url, auth, ctx),
    )


def measure_clients(
    results: Results, peer: peers.Peer, handle: peers.ServerHandle, ctx: Context
) -> None:
    """Uv pip install and poetry lock of the private chain, each the median of --repeats
    runs from a cold client cache (one run swung by +-40% on this VM)."""

    def median_of(run: Callable[[], float]) -> float:
        return statistics.median(run() for _ in range(ctx.args.repeats))

    def uv() -> None:
        seconds = median_of(
            lambda: clients.uv_install(handle.index_url, PASSWORD, ctx.chain[0], len(ctx.chain))
        )
        results.put("uv_install_s", peer.key, seconds)

    def poetry() -> None:
        seconds = median_of(lambda: clients.poetry_lock(handle.index_url, PASSWORD, ctx.chain))
        results.put("poetry_lock_s", peer.key, seconds)

    step(results, peer.key, "uv pip install chain-0", uv)
    step(results, peer.key, "poetry lock", poetry)


def measure_uploads(
    results: Results, peer: peers.Peer, handle: peers.ServerHandle, ctx: Context
) -> None:
    """One sequential twine upload of N files, then the 200 MiB upload and download."""

    def twine() -> None:
        out = clients.twine_upload(handle.upload_url, PASSWORD, ctx.upload_files, handle.pid)
        results.put("upload_files_per_s", peer.key, out["files_per_s"])
        results.put("upload_seconds", peer.key, out["seconds"])
        results.put("upload_peak_rss_mib", peer.key, out["peak_rss_mib"])

    def huge() -> None:
        up = clients.curl_upload(handle.upload_url, PASSWORD, ctx.huge_wheel, handle.pid)
        results.put("huge_upload_mib_s", peer.key, up["mib_per_s"])
        results.put("huge_upload_rss_growth_mib", peer.key, up["rss_growth_mib"])
        link = clients.find_file(
            handle.index_url, corpus.HUGE_WHEEL_PROJECT, ctx.huge_wheel.name, peer.auth_headers()
        )
        down = clients.curl_download(link.url, PASSWORD, handle.pid, ctx.huge_wheel.stat().st_size)
        results.put("huge_download_mib_s", peer.key, down["mib_per_s"])
        results.put("huge_download_rss_growth_mib", peer.key, down["rss_growth_mib"])

    step(results, peer.key, f"twine upload of {len(ctx.upload_files)} files", twine)
    step(results, peer.key, "200 MiB upload/download", huge)


def measure_import(results: Results, peer: peers.Peer, ctx: Context) -> None:
    """The server's own bulk import (``teamindex import``, ``peryx import-dir``) of
    --import-files ~100 KB wheels into an empty store: files/s, command time only."""
    work = ctx.run_root / f"{peer.key}-import"
    shutil.rmtree(work, ignore_errors=True)
    command = peer.import_command(work / "src", work / "data")
    if command is None:
        return
    source = importspeed.build(ctx.args.import_files, 100)
    files = sorted(p for p in source.iterdir() if p.name.endswith(".whl"))
    peers.link_tree(files, work / "src")
    try:
        os.sync()
        start = time.perf_counter()
        peers.run_cmd(command, 3600)
        results.put("import_files_per_s", peer.key, len(files) / (time.perf_counter() - start))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_peer(key: str, ctx: Context, results: Results) -> None:
    """Install, load, start and measure one server; always stop it and clean up."""
    peer = make_peer(key, ctx.args)
    log(f"{key}: installing")
    results.versions[key] = peer.install()
    results.put("loadavg", key, os.getloadavg()[0])
    run_dir = ctx.run_root / key
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    store = run_dir / "store"
    try:
        log(f"{key}: loading corpus")
        load_store(peer, ctx, store, results)
        # Write the loaded store back now: the kernel would otherwise do it during the first
        # load runs, on the cores the server and wrk share (seen as a p99 of ~28 ms there).
        os.sync()
        for text in peer.notes:
            results.note(f"{key}: {text}")
        log(f"{key}: starting")
        handle = peer.start_ready(store, run_dir / "server.log")
        try:
            measure_reads(results, peer, handle, ctx)
            measure_clients(results, peer, handle, ctx)
            measure_uploads(results, peer, handle, ctx)
            rss = handle.rss_kib()
            if rss is not None:
                results.put("rss_end_mib", key, rss / 1024)
        finally:
            handle.stop()

        def cold() -> None:
            out = clients.cold_start(
                lambda: peer.start_cold(store, peers.free_port(), run_dir / "cold.log"),
                peer.cold_auth_headers(store),
                ctx.args.repeats,
            )
            results.put("cold_start_s", key, out["median_s"])

        step(results, key, f"cold start x{ctx.args.repeats}", cold)
        step(
            results,
            key,
            f"import of {ctx.args.import_files} wheels",
            lambda: measure_import(results, peer, ctx),
        )
    finally:
        if not ctx.args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def measure_front(
    ctx: Context, results: Results, args: argparse.Namespace, front: str = "nginx"
) -> None:
    """teamindex as the README runs it behind nginx or Caddy (`teamindex nginx-config`,
    `caddy-config`): the 100 KB wheel, which the front sends after teamindex's check (kept
    by nginx for 5 s; Caddy asks teamindex for every download)."""
    column = FRONT_COLUMNS[front]
    version = peers.nginx_version() if front == "nginx" else peers.caddy_version()
    if version is None:
        results.note(f"{front} not installed: the {PEER_LABELS[column]} column is skipped")
        return
    results.versions[front] = version
    peer = make_peer("teamindex", args)
    peer.install()  # a no-op once the teamindex row made its venv (not run with --servers "")
    results.put("loadavg", column, os.getloadavg()[0])
    run_dir = ctx.run_root / column
    shutil.rmtree(run_dir, ignore_errors=True)
    teamindex, server = peers.start_teamindex_front(peer, ctx.large_wheel, run_dir, PASSWORD, front)
    try:
        auth = {"Authorization": peers.basic_auth_header(peers.USER, PASSWORD)}
        link = clients.find_file(
            server.index_url, corpus.LARGE_WHEEL_PROJECT, ctx.large_wheel.name, auth
        )
        step(
            results,
            column,
            "~100 KB wheel",
            lambda: measure_endpoint(results, column, "wheel_100k", link.url, auth, ctx),
        )
    finally:
        server.stop()
        teamindex.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def measure_nginx(ctx: Context, results: Results) -> None:
    """The download ceiling: nginx (sendfile, Basic auth) serving the same two files."""
    version = peers.nginx_version()
    if version is None:
        results.note("nginx not installed (apt-get install -y nginx): ceiling row skipped")
        return
    results.versions["nginx"] = version
    results.put("loadavg", "nginx", os.getloadavg()[0])
    run_dir = ctx.run_root / "nginx"
    shutil.rmtree(run_dir, ignore_errors=True)
    root = run_dir / "root"
    peers.link_tree([ctx.large_wheel, ctx.huge_wheel], root)
    handle = peers.start_nginx(root, run_dir / "prefix", PASSWORD)
    try:
        auth = {"Authorization": peers.basic_auth_header(peers.USER, PASSWORD)}
        url = f"{handle.base_url}/{ctx.large_wheel.name}"
        step(
            results,
            "nginx",
            "~100 KB wheel",
            lambda: measure_endpoint(results, "nginx", "wheel_100k", url, auth, ctx),
        )

        def huge() -> None:
            size = ctx.huge_wheel.stat().st_size
            down = clients.curl_download(
                f"{handle.base_url}/{ctx.huge_wheel.name}", PASSWORD, None, size
            )
            results.put("huge_download_mib_s", "nginx", down["mib_per_s"])

        step(results, "nginx", "200 MiB download", huge)
    finally:
        handle.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, str]:
    """nproc, CPU model, RAM, Python and kernel of this machine."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram_gib": f"{mem_kib / 1024 / 1024:.1f}",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def tool_versions() -> dict[str, str]:
    """Versions of the load generator and clients."""
    out: dict[str, str] = {}
    if load.have_wrk():
        proc = subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True, timeout=30, check=False
        )
        out["wrk"] = (proc.stdout + proc.stderr).split("\n", 1)[0].strip()
    for tool in ("uv", "twine", "poetry"):
        try:
            proc = peers.run_cmd([peers.tool_path(tool), "--version"], 120)
            # Drop trailing "(build info)" but keep poetry's "(version X)".
            out[tool] = re.sub(r"\s*\((?!version).*$", "", proc.stdout.strip().splitlines()[0])
        except peers.BenchError as exc:
            out[tool] = f"unavailable ({exc})"
    return out


def fmt_value(value: float | None, digits: int) -> str:
    """Table cell for one number."""
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(metric: Metric, values: dict[str, float]) -> str:
    """Teamindex divided by the best of the other peers (pypiserver twice, devpi, peryx)."""
    mine = values.get("teamindex")
    if metric.key == "loadavg":
        return "—"
    others = [values[k] for k in PEER_KEYS[1:] if k in values]
    if mine is None or not others:
        return "—"
    best = max(others) if metric.higher_is_better else min(others)
    if best == 0:
        return "—"
    return f"{mine / best:.2f}"


def render_table(results: Results, upload_count: int, import_count: int) -> str:
    """Markdown table: metric | each server | ratio teamindex/best peer."""
    head = ["metric", *(PEER_LABELS[c] for c in COLUMNS), "teamindex / best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        values = results.values.get(metric.key, {})
        if not values:
            continue
        arrow = "↑" if metric.higher_is_better else "↓"
        label = metric.label.replace(" N files", f" {upload_count} files")
        label = label.replace(" N ~100 KB", f" {import_count:,} ~100 KB")
        cells = [
            f"{label} {arrow}",
            *(fmt_value(values.get(c), metric.digits) for c in COLUMNS),
            ratio(metric, values),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(
    results: Results, ctx: Context, meta: dict[str, object], out_dir: Path
) -> tuple[Path, Path]:
    """Write <timestamp>.json and latest.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = str(meta["timestamp"])
    doc = {
        **meta,
        "versions": results.versions,
        "metrics": [
            {
                "key": m.key,
                "label": m.label,
                "higher_is_better": m.higher_is_better,
                "values": results.values.get(m.key, {}),
            }
            for m in METRICS
        ],
        "notes": results.notes,
    }
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    machine = meta["machine"]
    assert isinstance(machine, dict)
    lines = [
        f"# teamindex benchmark — {stamp}",
        "",
        f"Command: `{meta['command']}` (total {meta['total_s']:.0f} s)",
        "",
        render_table(results, len(ctx.upload_files), ctx.args.import_files),
        "",
        "↑ higher is better, ↓ lower is better; ratio = teamindex / best of the other peers "
        "(teamindex + nginx and teamindex + caddy are teamindex's own front configurations; "
        "nginx alone is a ceiling, not a peer).",
        "",
        "## Machine",
        "",
        f"- nproc: {machine['nproc']}; CPU: {machine['cpu']}; RAM: {machine['ram_gib']} GiB",
        f"- Python {machine['python']}; kernel {machine['kernel']}",
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in {**results.versions, **meta["tools"]}.items()),  # type: ignore[dict-item]
        "",
        "## Configuration",
        "",
        *(f"- {k}: {v}" for k, v in meta["config"].items()),  # type: ignore[attr-defined]
        "",
        "## Notes",
        "",
        *(f"- {n}" for n in results.notes or ["none"]),
        "",
    ]
    md_path = out_dir / "latest.md"
    md_path.write_text("\n".join(lines))
    return json_path, md_path


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--large", action="store_true", help="100k-file corpus (10,000 projects x 5 versions x 2)"
    )
    p.add_argument("--quick", action="store_true", help="3 s load runs instead of 10 s")
    p.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "results",
        help="directory for <timestamp>.json and latest.md",
    )
    p.add_argument(
        "--servers", default=",".join(PEER_KEYS), help=f"comma list from {','.join(PEER_KEYS)}"
    )
    p.add_argument(
        "--no-nginx",
        action="store_true",
        help="skip the front columns (nginx, Caddy) and the nginx ceiling",
    )
    p.add_argument(
        "--duration", type=float, help="seconds per load run (default 10, 3 with --quick)"
    )
    p.add_argument("--threads", type=int, default=2, help="wrk -t")
    p.add_argument("--connections", type=int, default=16, help="wrk -c")
    p.add_argument(
        "--upload-count",
        type=int,
        help="files in the sequential twine upload (default 500, 100 with --quick)",
    )
    p.add_argument(
        "--cold-files",
        type=int,
        help="files stored for the cold start (default 10k, 100k with --large)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repetitions of the cold start, uv install and poetry lock (median reported)",
    )
    p.add_argument(
        "--huge-mib", type=int, default=200, help="size of the large upload/download wheel"
    )
    p.add_argument(
        "--devpi-full",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="upload the whole corpus to devpi (default: yes, but not with --large)",
    )
    p.add_argument("--teamindex-threads", type=int, help="pass --threads N to teamindex serve")
    p.add_argument(
        "--import-files",
        type=int,
        help="~100 KB wheels in the bulk-import row (default 5,000, 1,000 with --quick)",
    )
    p.add_argument(
        "--python-load",
        action="store_true",
        help="use the Python load generator even if wrk exists",
    )
    p.add_argument(
        "--no-store-cache",
        action="store_true",
        help="load devpi and teamindex from scratch instead of reusing bench/.cache/stores",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep per-server run directories in bench/.cache/run"
    )
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.upload_count is None:
        args.upload_count = 100 if args.quick else 500
    if args.import_files is None:
        args.import_files = 1000 if args.quick else 5000
    if args.cold_files is None:
        args.cold_files = 100_000 if args.large else 10_000
    if args.devpi_full is None:
        args.devpi_full = not args.large
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark and write the reports."""
    args = parse_args(argv)
    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log("generating corpus")
    spec, main_corpus, fill, uploads = build_corpus(args)
    huge = corpus.generate_huge_wheel(CACHE_DIR / "corpus" / f"huge-{args.huge_mib}", args.huge_mib)
    large_wheel = next(
        p
        for p in main_corpus.paths
        if p.name.startswith(corpus.escape_name(corpus.LARGE_WHEEL_PROJECT))
    )
    ctx = Context(
        args=args,
        load_cfg=load.LoadConfig(args.threads, args.connections, args.duration),
        main_files=main_corpus.paths,
        fill_files=fill.paths,
        subset_files=subset_of(main_corpus, spec),
        upload_files=uploads.paths,
        huge_wheel=huge,
        large_wheel=large_wheel,
        chain=[f"{corpus.CHAIN_PREFIX}{i}" for i in range(corpus.CHAIN_LENGTH)],
        cold_files=len(main_corpus.files) + len(fill.files),
        corpus_key=spec.key(),
        run_root=CACHE_DIR / "run",
    )
    log(f"corpus: {len(main_corpus.files)} files in {len(main_corpus.projects)} projects; "
        f"cold-start store {ctx.cold_files} files; {len(uploads.files)} upload files")  # fmt: skip
    results = Results()
    if not load.have_wrk():
        results.note("wrk not found (apt-get install -y wrk): the Python load generator was used")
    for key in [k.strip() for k in args.servers.split(",") if k.strip()]:
        try:
            measure_peer(key, ctx, results)
        except (peers.BenchError, OSError, RuntimeError, ValueError) as exc:
            results.note(f"{key}: not measured: {shorten(str(exc))}")
    if not args.no_nginx:
        for front, column in FRONT_COLUMNS.items():
            try:
                measure_front(ctx, results, args, front)
            except (peers.BenchError, OSError, RuntimeError) as exc:
                results.note(f"{PEER_LABELS[column]}: not measured: {shorten(str(exc))}")
        try:
            measure_nginx(ctx, results)
        except (peers.BenchError, OSError, RuntimeError) as exc:
            results.note(f"nginx: not measured: {exc}")
    meta: dict[str, object] = {
        "timestamp": stamp,
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "tools": tool_versions(),
        "config": {
            "corpus": f"{len(main_corpus.files)} files, {len(main_corpus.projects)} projects "
            f"({spec.projects} x {spec.versions} versions x wheel+sdist, "
            "plus big-project, large-wheel, chain-0..9)",
            "cold-start store": f"{ctx.cold_files} files",
            "load": f"{'wrk' if load.have_wrk() and not args.python_load else 'python'} "
            f"-t{args.threads} -c{args.connections} -d{args.duration:g}s, "
            "HTTP Basic auth on every request",
            "sequential upload": f"{len(uploads.files)} files, one twine invocation, password auth",
            "large file": f"{huge.stat().st_size / 1024 / 1024:.0f} MiB wheel, "
            "curl multipart upload / GET",
            "bulk import": f"{args.import_files} wheels of ~100 KB into an empty store, "
            "the server's own import command",
            "load average at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        },
    }
    meta["total_s"] = time.perf_counter() - started
    table = render_table(results, len(uploads.files), args.import_files)
    print(table)
    for n in results.notes:
        print(f"- {n}")
    json_path, md_path = write_reports(results, ctx, meta, args.out)
    log(f"wrote {json_path} and {md_path} in {meta['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
