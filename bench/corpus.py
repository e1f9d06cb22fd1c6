"""Synthetic corpus of valid Python distributions for the benchmark.

Everything here is pure generation with :mod:`zipfile` and :mod:`tarfile` (no build
backends), deterministic for a given spec, so a corpus can be cached and reused between
runs.  Each wheel carries METADATA, WHEEL and RECORD in ``{name}-{version}.dist-info/``
(PEP 427); each sdist has one top-level ``{name}-{version}/`` directory with PKG-INFO
(PEP 625).  Names follow the normalized PEP 427/625 spelling (``foo_bar-1.0.0...``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A fixed timestamp keeps archives byte-identical between runs (reproducible sizes/hashes).
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_TAR_MTIME = 1704067200
MANIFEST = "manifest.json"
# Bumped when the bytes of the generated files change, so that cached corpora are rebuilt
# (2: Metadata-Version 2.2, which peryx requires of sdists).
FORMAT = 2
METADATA_VERSION = "2.2"

BIG_PROJECT = "big-project"
BIG_PROJECT_VERSIONS = 150
LARGE_WHEEL_PROJECT = "large-wheel"
LARGE_WHEEL_BYTES = 100 * 1024
CHAIN_PREFIX = "chain-"
CHAIN_LENGTH = 10
UPLOAD_PROJECT_PREFIX = "upload-"
HUGE_WHEEL_PROJECT = "huge-wheel"


@dataclass(frozen=True)
class Dist:
    """One distribution to generate: a wheel or an sdist of one project version."""

    name: str
    version: str
    kind: str  # "wheel" or "sdist"
    requires: tuple[str, ...] = ()
    payload_bytes: int = 0  # incompressible padding, to reach a target file size

    @property
    def filename(self) -> str:
        """The PEP 427 / PEP 625 filename of this distribution."""
        stem = f"{escape_name(self.name)}-{self.version}"
        return f"{stem}-py3-none-any.whl" if self.kind == "wheel" else f"{stem}.tar.gz"


@dataclass(frozen=True)
class CorpusSpec:
    """Shape of a corpus: regular projects plus the fixed special projects."""

    projects: int = 1000
    versions: int = 3
    prefix: str = "proj-"
    with_specials: bool = True

    def key(self) -> str:
        """Short stable identifier, used as the cache directory name."""
        raw = json.dumps([asdict(self), FORMAT], sort_keys=True).encode()  # stores too
        return hashlib.sha256(raw).hexdigest()[:12]


@dataclass
class Corpus:
    """A generated corpus on disk and the facts the benchmark needs about it."""

    root: Path
    files: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Absolute paths of all distribution files."""
        return [self.root / f for f in self.files]


def escape_name(name: str) -> str:
    """Return the filename form of a normalized project name (``foo-bar`` -> ``foo_bar``)."""
    return name.replace("-", "_").replace(".", "_").lower()


def record_hash(data: bytes) -> str:
    """Return the RECORD hash field for ``data`` (urlsafe base64 sha256, no padding)."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def core_metadata(dist: Dist) -> str:
    """Return the core metadata text (METADATA / PKG-INFO) for ``dist``."""
    lines = [
        f"Metadata-Version: {METADATA_VERSION}",
        f"Name: {dist.name}",
        f"Version: {dist.version}",
        f"Summary: Synthetic benchmark package {dist.name}",
        "Author-email: Bench <bench@example.invalid>",
        "License: MIT",
        "Requires-Python: >=3.8",
        "Classifier: Programming Language :: Python :: 3",
    ]
    lines += [f"Requires-Dist: {req}" for req in dist.requires]
    lines += ["Description-Content-Type: text/markdown", "", f"# {dist.name}", ""]
    return "\n".join(lines)


def _payload(dist: Dist) -> bytes:
    """Deterministic incompressible bytes of the requested size (seeded by the filename)."""
    if dist.payload_bytes <= 0:
        return b""
    return random.Random(dist.filename).randbytes(dist.payload_bytes)


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes, compress: bool = True) -> None:
    """Add one member with a fixed timestamp."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def build_wheel(dist: Dist, dest_dir: Path) -> Path:
    """Write a pure-Python wheel for ``dist`` into ``dest_dir`` and return its path."""
    pkg = escape_name(dist.name)
    info_dir = f"{pkg}-{dist.version}.dist-info"
    members: list[tuple[str, bytes]] = [
        (f"{pkg}/__init__.py", f'"""{dist.name}."""\n__version__ = "{dist.version}"\n'.encode()),
    ]
    payload = _payload(dist)
    if payload:
        members.append((f"{pkg}/data.bin", payload))
    members.append((f"{info_dir}/METADATA", core_metadata(dist).encode()))
    wheel_txt = (
        "Wheel-Version: 1.0\nGenerator: teamindex-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    members.append((f"{info_dir}/WHEEL", wheel_txt.encode()))
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in members)
    record += f"{info_dir}/RECORD,,\n"
    path = dest_dir / dist.filename
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            _zip_write(zf, name, data, compress=not name.endswith(".bin"))
        _zip_write(zf, f"{info_dir}/RECORD", record.encode())
    return path


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one regular-file member with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _TAR_MTIME
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def build_sdist(dist: Dist, dest_dir: Path) -> Path:
    """Write an sdist (single top-level directory with PKG-INFO) and return its path."""
    pkg = escape_name(dist.name)
    top = f"{pkg}-{dist.version}"
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist.name}"\nversion = "{dist.version}"\n'
        f"dependencies = {json.dumps(list(dist.requires))}\n"
    )
    path = dest_dir / dist.filename
    buf = io.BytesIO()
    # mtime=0 in the gzip header keeps the sdist byte-identical between runs.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _tar_add(tf, f"{top}/PKG-INFO", core_metadata(dist).encode())
        _tar_add(tf, f"{top}/pyproject.toml", pyproject.encode())
        _tar_add(tf, f"{top}/src/{pkg}/__init__.py", f'__version__ = "{dist.version}"\n'.encode())
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return path


def build_dist(dist: Dist, dest_dir: Path) -> Path:
    """Build ``dist`` as a wheel or an sdist."""
    return build_wheel(dist, dest_dir) if dist.kind == "wheel" else build_sdist(dist, dest_dir)


def regular_dists(prefix: str, projects: int, versions: int, first_version: int = 0) -> list[Dist]:
    """Wheel + sdist for each of ``projects`` x ``versions``; each project requires the next.

    The Requires-Dist chains are ten projects long (project 10k+9 requires nothing), so
    that resolvers exercising the corpus find every dependency inside it.
    """
    dists: list[Dist] = []
    for p in range(projects):
        name = f"{prefix}{p:05d}"
        requires = (f"{prefix}{p + 1:05d}>=1.0",) if p % 10 != 9 and p + 1 < projects else ()
        for v in range(first_version, first_version + versions):
            version = f"1.{v}.0"
            dists.append(Dist(name, version, "wheel", requires))
            dists.append(Dist(name, version, "sdist", requires))
    return dists


def special_dists() -> list[Dist]:
    """The projects the measurements target: 300-file project, ~100 KB wheel, chain-0..9."""
    dists: list[Dist] = []
    for v in range(BIG_PROJECT_VERSIONS):
        version = f"{v // 100}.{v % 100}.0"
        dists.append(Dist(BIG_PROJECT, version, "wheel", ("chain-9>=1.0",)))
        dists.append(Dist(BIG_PROJECT, version, "sdist", ("chain-9>=1.0",)))
    dists.append(
        Dist(LARGE_WHEEL_PROJECT, "1.0.0", "wheel", payload_bytes=LARGE_WHEEL_BYTES - 1500)
    )
    for i in range(CHAIN_LENGTH):
        requires = (f"{CHAIN_PREFIX}{i + 1}>=1.0",) if i + 1 < CHAIN_LENGTH else ()
        dists.append(Dist(f"{CHAIN_PREFIX}{i}", "1.0.0", "wheel", requires))
    return dists


def upload_dists(count: int) -> list[Dist]:
    """``count`` small files (wheels and sdists) for the sequential-upload measurement."""
    per_project = 10
    dists: list[Dist] = []
    for i in range(count):
        project, rest = divmod(i, per_project)
        version = f"2.{rest // 2}.0"
        kind = "wheel" if rest % 2 == 0 else "sdist"
        dists.append(Dist(f"{UPLOAD_PROJECT_PREFIX}{project:04d}", version, kind))
    return dists


def generate(dists: list[Dist], dest_dir: Path) -> Corpus:
    """Build ``dists`` into ``dest_dir`` unless a complete manifest says it is already there."""
    manifest = dest_dir / MANIFEST
    names = [d.filename for d in dists]
    if manifest.exists():
        cached = json.loads(manifest.read_text())
        fresh = cached.get("format") == FORMAT and cached.get("files") == names
        if fresh and all((dest_dir / n).exists() for n in names[:50]):
            return Corpus(dest_dir, names, cached["projects"])
    if dest_dir.exists():
        shutil.rmtree(dest_dir)
    dest_dir.mkdir(parents=True)
    for dist in dists:
        build_dist(dist, dest_dir)
    projects = sorted({d.name for d in dists})
    manifest.write_text(json.dumps({"format": FORMAT, "files": names, "projects": projects}))
    return Corpus(dest_dir, names, projects)


def generate_huge_wheel(dest_dir: Path, mib: int = 200) -> Path:
    """A wheel with one stored (uncompressed) random member of ``mib`` MiB."""
    dist = Dist(HUGE_WHEEL_PROJECT, "1.0.0", "wheel", payload_bytes=mib * 1024 * 1024)
    path = dest_dir / dist.filename
    if path.exists() and path.stat().st_size > dist.payload_bytes:
        return path
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = dest_dir / ".tmp"
    tmp_dir.mkdir(exist_ok=True)
    built = build_wheel(dist, tmp_dir)
    built.replace(path)
    tmp_dir.rmdir()
    return path


def main_corpus_dists(spec: CorpusSpec) -> list[Dist]:
    """All distributions of the main corpus described by ``spec``."""
    dists = regular_dists(spec.prefix, spec.projects, spec.versions)
    return dists + special_dists() if spec.with_specials else dists
