"""HTTP load generation: ``wrk`` when installed, else a small threaded Python generator.

Both report the same :class:`LoadResult` (requests/s, p50, p99, error count) so that every
server is measured by the same generator within one run.  All traffic goes to loopback.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

from peers import connect

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one fixed-duration load run against one URL."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


@dataclass(frozen=True)
class LoadConfig:
    """Shape of the load: wrk's -t/-c/-d and the per-request timeout."""

    threads: int = 2
    connections: int = 16
    duration_s: float = 10.0
    timeout_s: float = 60.0


def have_wrk() -> bool:
    """Whether the ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def _to_ms(value: str) -> float:
    """Convert a wrk duration such as ``1.23ms`` or ``2.00s`` to milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """Parse ``wrk --latency`` output into a :class:`LoadResult`."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and total and p50 and p99):
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return LoadResult(
        float(rps.group(1)),
        _to_ms(p50.group(1)),
        _to_ms(p99.group(1)),
        int(total.group(1)),
        errors,
        "wrk",
    )


def run_wrk(url: str, headers: dict[str, str], cfg: LoadConfig) -> LoadResult:
    """Run wrk against ``url`` and parse its report."""
    cmd = [
        "wrk", f"-t{cfg.threads}", f"-c{cfg.connections}", f"-d{cfg.duration_s:g}s",
        f"--timeout={cfg.timeout_s:g}s", "--latency",
    ]  # fmt: skip
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}"]
    cmd.append(url)
    # wrk waits for in-flight requests after -d, so allow one request timeout on top.
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=cfg.duration_s + cfg.timeout_s + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-500:]}")
    return parse_wrk(proc.stdout)


def _percentile(sorted_ms: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty list)."""
    if not sorted_ms:
        return 0.0
    rank = max(0, min(len(sorted_ms) - 1, round(pct / 100 * len(sorted_ms)) - 1))
    return sorted_ms[rank]


def run_python_load(url: str, headers: dict[str, str], cfg: LoadConfig) -> LoadResult:
    """Closed-loop load with keep-alive connections, one thread per connection."""
    deadline = time.perf_counter() + cfg.duration_s
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        conn, path = connect(url, cfg.timeout_s)
        local: list[float] = []
        local_errors = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    local_errors += 1
            except OSError:
                local_errors += 1
                conn.close()
                conn, path = connect(url, cfg.timeout_s)
                continue
            local.append((time.perf_counter() - start) * 1000)
        conn.close()
        with lock:
            latencies.extend(local)
            errors[0] += local_errors

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(cfg.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(cfg.duration_s + cfg.timeout_s + 5)
    elapsed = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    p50 = statistics.median(latencies) if latencies else 0.0
    return LoadResult(count / elapsed, p50, _percentile(latencies, 99), count, errors[0], "python")


def run_load(
    url: str, headers: dict[str, str], cfg: LoadConfig, force_python: bool = False
) -> LoadResult:
    """Measure ``url`` with wrk if available (unless ``force_python``), else the Python fallback."""
    if have_wrk() and not force_python:
        return run_wrk(url, headers, cfg)
    return run_python_load(url, headers, cfg)
