"""Build small, valid (or deliberately broken) distributions with zipfile/tarfile.

Fast and offline: no build backend runs. The files are what a real build produces in the
parts an index reads: a wheel with dist-info METADATA, WHEEL and RECORD; an sdist with a
single top-level directory holding PKG-INFO.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import struct
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name


def dist_name(name: str) -> str:
    """The filename form of a project name (PEP 427/625: normalized, '-' -> '_')."""
    return canonicalize_name(name).replace("-", "_")


def metadata_text(
    name: str,
    version: str,
    *,
    summary: str = "A test package",
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    description: str = "",
    metadata_version: str = "2.1",
) -> str:
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
    ]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    text = "\n".join(lines) + "\n"
    if description:
        text += "Description-Content-Type: text/markdown\n\n" + description + "\n"
    return text


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    summary: str = "A test package",
    metadata: str | None = None,
    filename: str | None = None,
    padding: int = 0,
    omit: Sequence[str] = (),
    legacy: bool = False,
) -> Path:
    """A pure-Python wheel importable as `<dist_name>`; `metadata` overrides METADATA.
    `legacy`: named as older producers did, filename and dist-info spelling the name as
    given (`Legacy.Name-1.0-py3-none-any.whl` with `Legacy.Name-1.0.dist-info/`)."""
    base = dist_name(name)
    dist_info = f"{name if legacy else base}-{version}.dist-info"
    if legacy and filename is None:
        filename = f"{name}-{version}-py3-none-any.whl"
    module = f"{base}/__init__.py"
    files: dict[str, bytes] = {
        module: f'__version__ = "{version}"\n'.encode() + b"#" * padding,
        f"{dist_info}/METADATA": (
            metadata
            or metadata_text(
                name,
                version,
                summary=summary,
                requires_dist=requires_dist,
                requires_python=requires_python,
            )
        ).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    files = {path: data for path, data in files.items() if path.rsplit("/", 1)[-1] not in omit}
    record = "\n".join(_record_line(p, d) for p, d in files.items())
    record += f"\n{dist_info}/RECORD,,\n"
    if "RECORD" not in omit:
        files[f"{dist_info}/RECORD"] = record.encode()
    path = directory / (filename or f"{base}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    metadata: str | None = None,
    filename: str | None = None,
) -> Path:
    """A .tar.gz sdist with <name>-<version>/PKG-INFO and a pyproject.toml."""
    base = f"{dist_name(name)}-{version}"
    pkg_info = (
        metadata
        or metadata_text(
            name, version, requires_dist=requires_dist, requires_python=requires_python
        )
    ).encode()
    pyproject = (
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    ).encode()
    path = directory / (filename or f"{base}.tar.gz")
    with tarfile.open(path, "w:gz") as archive:
        for member, data in ((f"{base}/PKG-INFO", pkg_info), (f"{base}/pyproject.toml", pyproject)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    return path


# -- archive bombs (issue 10): small on disk, huge when inflated; built in milliseconds --------


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def tar_bomb(
    directory: Path, name: str, version: str, *, inflated: int = 0, members: int = 0
) -> Path:
    """A .tar.gz sdist with a valid PKG-INFO, then `inflated` bytes of zeros in one member
    and `members` empty members. gzip members may be concatenated, so one compressed MiB of
    zeros (about 1 KB) repeated makes a 2 GB member out of 2 MB on disk."""
    base = f"{dist_name(name)}-{version}"
    pkg_info = metadata_text(name, version).encode()
    head = _tar_header(f"{base}/PKG-INFO", len(pkg_info)) + pkg_info
    head += b"\0" * (-len(head) % 512)
    parts = [gzip.compress(head)]
    if inflated:
        mib = gzip.compress(b"\0" * (1 << 20))
        parts.append(gzip.compress(_tar_header(f"{base}/zeros.bin", inflated)))
        parts.extend([mib] * (inflated >> 20))
    if members:
        batch = gzip.compress(_tar_header(f"{base}/x", 0) * 1000)
        parts.extend([batch] * (members // 1000))
    parts.append(gzip.compress(b"\0" * 1024))
    path = directory / f"{base}.tar.gz"
    path.write_bytes(b"".join(parts))
    return path


def claim_zip_directory(path: Path, *, entries: int, size: int | None = None) -> Path:
    """Rewrite a zip's end records (zip64) to claim `entries` entries and a central directory
    of `size` bytes, as a million-entry bomb's would, without writing a million entries."""
    data = path.read_bytes()
    end = data.rindex(zipfile.stringEndArchive)
    (_sig, _disk, _cd_disk, _n, _total, cd_size, cd_offset, _comment) = struct.unpack(
        zipfile.structEndArchive, data[end : end + zipfile.sizeEndCentDir]
    )
    body = data[:end]
    record = struct.pack(
        zipfile.structEndArchive64,
        zipfile.stringEndArchive64,
        44,
        45,
        45,
        0,
        0,
        entries,
        entries,
        cd_size if size is None else size,
        cd_offset,
    )
    locator = struct.pack(
        zipfile.structEndArchive64Locator, zipfile.stringEndArchive64Locator, 0, len(body), 1
    )
    tail = struct.pack(
        zipfile.structEndArchive,
        zipfile.stringEndArchive,
        0,
        0,
        0xFFFF,
        0xFFFF,
        0xFFFFFFFF,
        0xFFFFFFFF,
        0,
    )
    path.write_bytes(body + record + locator + tail)
    return path
