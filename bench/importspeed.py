"""`teamindex import` speed on a generated pypiserver-style directory (issue 14).

    python bench/importspeed.py                  # 10,000 wheels of ~100 KB
    python bench/importspeed.py --files 2000 --python .venv/bin/python

Builds (once, cached in bench/.cache/import-<files>-<kib>k/) a flat directory of wheels of
~`--kib` KiB each (incompressible payload, as real wheels are), imports it with the given
interpreter's `-m teamindex import` into a fresh data dir, and reports files/s and MB/s,
the CPU time per file (user and system apart, the import's worker processes included: a
shared machine's load stretches the wall time, not these) and the load average around it.
A second import of the same directory (every file identical) is timed too: it is what a
re-run after a crash pays for the files already in.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402

PER_PROJECT = 10  # versions per project, as a long-lived pypiserver directory has


def build(files: int, kib: int) -> Path:
    """The cached corpus directory: `files` wheels of ~`kib` KiB."""
    dists = [
        corpus.Dist(f"imp-{i // PER_PROJECT:05d}", f"1.{i % PER_PROJECT}.0", "wheel",
                    payload_bytes=kib * 1024 - 1500)
        for i in range(files)
    ]  # fmt: skip
    return corpus.generate(dists, BENCH_DIR / ".cache" / f"import-{files}-{kib}k").root


PR_SET_CHILD_SUBREAPER = 36


def adopt_descendants() -> None:
    """Become the subreaper of what we start (Linux): the import's worker processes are
    forked by multiprocessing's fork server, not by the import, so their CPU time reaches
    our RUSAGE_CHILDREN only if they are reaped here when the import exits."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_descendants(timeout: float = 30.0) -> None:
    """Wait for every descendant left (the fork server exits when the import does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)
    raise TimeoutError("descendants of the import still running")


def run_import(python: str, source: Path, data_dir: Path) -> tuple[float, float, float]:
    """(seconds, user CPU seconds, system CPU seconds) of one `teamindex import` of `source`
    into `data_dir`, with every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "teamindex", "import", "--quiet", "--data-dir", str(data_dir), str(source)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    reap_descendants()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000, help="wheels in the directory")
    p.add_argument("--kib", type=int, default=100, help="size of each wheel in KiB")
    p.add_argument("--python", default=sys.executable, help="interpreter with teamindex")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="JSON results dir")
    args = p.parse_args(argv)
    source = build(args.files, args.kib)
    names = [n for n in (source.iterdir()) if n.name.endswith(".whl")]
    total = sum(n.stat().st_size for n in names)
    adopt_descendants()
    work = Path(tempfile.mkdtemp(prefix="importspeed-"))
    load_before = os.getloadavg()[0]
    try:
        first, user, system = run_import(args.python, source, work / "data")
        again, _user, _system = run_import(args.python, source, work / "data")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "files": len(names),
        "bytes": total,
        "seconds": round(first, 2),
        "files_per_s": round(len(names) / first, 1),
        "mb_per_s": round(total / first / 1e6, 1),
        "user_ms_per_file": round(user * 1000 / len(names), 3),
        "sys_ms_per_file": round(system * 1000 / len(names), 3),
        "identical_rerun_files_per_s": round(len(names) / again, 1),
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "when": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
    }
    print(json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"import-{result['when']}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
