"""`teamindex import` speed on a generated pypiserver-style directory (issue 14).

    python bench/importspeed.py                  # 10,000 wheels of ~100 KB
    python bench/importspeed.py --files 2000 --python .venv/bin/python

Builds (once, cached in bench/.cache/import-<files>-<kib>k/) a flat directory of wheels of
~`--kib` KiB each (incompressible payload, as real wheels are), imports it with the given
interpreter's `-m teamindex import` into a fresh data dir, and reports files/s and MB/s. A
second import of the same directory (every file identical) is timed too: it is what a
re-run after a crash pays for the files already in.
"""

from __future__ import annotations

import argparse
import json
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


def run_import(python: str, source: Path, data_dir: Path) -> float:
    """Seconds for one `teamindex import` of `source` into `data_dir`."""
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "teamindex", "import", "--quiet", "--data-dir", str(data_dir), str(source)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


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
    work = Path(tempfile.mkdtemp(prefix="importspeed-"))
    try:
        first = run_import(args.python, source, work / "data")
        again = run_import(args.python, source, work / "data")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "files": len(names),
        "bytes": total,
        "seconds": round(first, 2),
        "files_per_s": round(len(names) / first, 1),
        "mb_per_s": round(total / first / 1e6, 1),
        "identical_rerun_files_per_s": round(len(names) / again, 1),
        "when": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
    }
    print(json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"import-{result['when']}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
