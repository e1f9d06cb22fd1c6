"""Pure rules for distributions: filenames, archives and core metadata. No Flask here.

Names, versions and filenames are parsed by `packaging`; this module only decides which of
its answers the index accepts and reads the metadata out of the archive (PEP 427, 625, 658).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import re
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# A METADATA/PKG-INFO larger than this is not metadata; refuse to read it (zip-bomb guard).
MAX_METADATA_BYTES = 4 << 20
# Archive bombs (issue 10): a 2 MB sdist inflating to 2 GB, a million tar members, a zip
# whose central directory claims a million entries. Checked while reading, before the cost:
# members and the zip's central directory size from its end record before zipfile reads the
# directory; tar members counted one by one; inflated bytes and time counted per read.
MAX_ARCHIVE_MEMBERS = 100_000
MAX_CENTRAL_DIRECTORY_BYTES = 16 << 20  # ~150 bytes per entry: room for 100,000 long names
MAX_INFLATION_RATIO = 50  # source compresses 4-10x; a stream of zeros ~1000x
MIN_INFLATED_ALLOWANCE = 64 << 20  # small sdists may inflate this much whatever the ratio
MAX_INSPECT_SECONDS = 60.0
# PEP 508 / core metadata "Name" (core-metadata spec, also Warehouse's form regex). ASCII:
# without re.ASCII, IGNORECASE lets look-alikes through (dotless i, long s, the Kelvin sign).
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE | re.ASCII)


class DistributionError(ValueError):
    """The uploaded or imported file is not an acceptable distribution; str() is the reason."""


@dataclass(frozen=True)
class FilenameInfo:
    """What a distribution's filename says about it."""

    filename: str
    project: NormalizedName
    version: Version
    packagetype: str  # "bdist_wheel" or "sdist"
    python_version: str  # wheel python tag(s), or "source"

    @property
    def canonical_version(self) -> str:
        return canonicalize_version(self.version)


@dataclass(frozen=True)
class CoreMetadata:
    """The fields of a distribution's core metadata that the index uses."""

    name: str
    version: str
    summary: str
    requires_python: str
    fields: dict[str, str | list[str]]


@dataclass(frozen=True)
class Inspection:
    """The result of reading a distribution archive."""

    metadata: CoreMetadata
    metadata_bytes: bytes | None  # exact METADATA bytes of a wheel (PEP 658); None for sdists


def is_project_name(name: str) -> bool:
    """Whether `name` is a valid PEP 508 project name (ASCII letters, digits, . _ -)."""
    return _NAME_RE.fullmatch(name) is not None


def validate_project_name(name: str) -> NormalizedName:
    """Return the normalized form of a project name, or raise DistributionError."""
    if not is_project_name(name):
        raise DistributionError(f"{name!r} is an invalid value for Name.")
    return canonicalize_name(name)


def project_pattern(text: str) -> str:
    """A project name or glob as tokens store it: normalized, or lower-cased when it holds
    a wildcard; ASCII only, like the names it is matched against."""
    if any(char in text for char in "*?["):
        if not text.isascii():
            raise DistributionError(f"{text!r} is not an ASCII project name pattern.")
        return text.lower()
    return validate_project_name(text)


def check_filename_characters(filename: str) -> None:
    """Refuse names that could escape a directory or confuse a log (Warehouse's rules)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise DistributionError(
            "Cannot upload a file with non-printable characters (ordinals 0-31) "
            "or the DEL character (ordinal 127) in the name."
        )
    if "/" in filename or "\\" in filename:
        raise DistributionError("Cannot upload a file with '/' or '\\' in the name.")
    if filename.startswith(".") or not filename:
        raise DistributionError(f"Invalid distribution filename: {filename!r}")


def parse_filename(filename: str) -> FilenameInfo:
    """Parse a wheel or sdist filename into project, version and type."""
    check_filename_characters(filename)
    if filename.endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        # ValueError as well: packaging raises a plain one for a release number longer than
        # Python's int-parsing limit (4300 digits), which would otherwise be a 500.
        except (InvalidWheelFilename, InvalidVersion, ValueError) as exc:
            raise DistributionError(f"Invalid wheel filename: {exc}") from exc
        # Older producers wrote the name as the project spells it (Django-, MarkupSafe-,
        # ruamel.yaml-); the binary distribution format spec says consumers must accept
        # "." and upper case there, and PyPI still hosts and accepts such files. The
        # spelling must still be a valid name (no other characters slip through).
        validate_project_name(filename.split("-", 1)[0])
        validate_project_name(name)
        pythons = ".".join(sorted({tag.interpreter for tag in tags}))
        return FilenameInfo(filename, name, version, "bdist_wheel", pythons)
    if filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
        except (InvalidSdistFilename, InvalidVersion, ValueError) as exc:
            raise DistributionError(f"Invalid source distribution filename: {filename}") from exc
        validate_project_name(name)
        return FilenameInfo(filename, name, version, "sdist", "source")
    raise DistributionError(
        "Invalid file extension: Use .tar.gz, .whl or .zip extension. "
        "See https://peps.python.org/pep-0527 for more information."
    )


def normalized_filename(info: FilenameInfo) -> str:
    """The filename today's tools would give this file: normalized name with "_", normalized
    version, tag sets sorted and lower case. Two spellings of one file (`Django-3.2.25-…`
    and `django-3.2.25-…`) are one file to an installer, so the index stores only one."""
    base = info.project.replace("-", "_")
    if info.packagetype == "bdist_wheel":
        parts = info.filename[: -len(".whl")].split("-")
        build = [parts[2]] if len(parts) == 6 else []
        tags = [".".join(sorted(part.lower().split("."))) for part in parts[-3:]]
        return "-".join([base, str(info.version), *build, *tags]) + ".whl"
    extension = ".zip" if info.filename.endswith(".zip") else ".tar.gz"
    return f"{base}-{info.version}{extension}"


def spelling_pattern(project: NormalizedName) -> str:
    """A SQL LIKE pattern (case-insensitive for ASCII) that every spelling of the project's
    filenames matches: each separator of the normalized name may be any run of characters.
    A superset; callers compare normalized_filename() of what it finds."""
    return project.replace("-", "%") + "-%"  # a normalized name holds no % or _


def inspect_distribution(
    path: Path, info: FilenameInfo, content: bytes | None = None
) -> Inspection:
    """Open the archive at *path*, read its core metadata and check it matches the filename.
    `content`: the file's bytes, already in memory (an import reads small files whole), read
    instead of the file: the same checks without reopening it and seeking in it."""
    source: Path | BinaryIO = path if content is None else _MemoryFile(content)
    if info.packagetype == "bdist_wheel":
        raw = _read_wheel_metadata(source, info)
        inspection = Inspection(parse_metadata(raw), raw)
    elif info.filename.endswith(".zip"):
        raw = _read_zip_sdist_metadata(source, info.filename)
        inspection = Inspection(parse_metadata(raw), None)
    else:
        raw = _read_tar_sdist_metadata(source, info.filename)
        inspection = Inspection(parse_metadata(raw), None)
    check_metadata_matches(inspection.metadata, info)
    return inspection


def check_metadata_matches(metadata: CoreMetadata, info: FilenameInfo) -> None:
    """The name and version inside the file must be the ones its filename claims."""
    if canonicalize_name(metadata.name) != info.project:
        raise DistributionError(
            f"Name in metadata {metadata.name!r} does not match the filename "
            f"{info.filename!r} (project {info.project!r})."
        )
    if Version(metadata.version) != info.version:
        raise DistributionError(
            f"Version in filename should be {metadata.version!r} not {str(info.version)!r}."
        )


def parse_metadata(raw: bytes) -> CoreMetadata:
    """Parse METADATA / PKG-INFO bytes (RFC 822 style) into the fields the index needs."""
    # Imported here: packaging.metadata pulls in email and the requirement parser, which
    # only uploads and imports need, not a server's first request (cold start, issue 14).
    from packaging.metadata import parse_email

    try:
        fields, _unparsed = parse_email(raw)
    except ValueError as exc:  # undecodable bytes and the like
        raise DistributionError(f"Invalid distribution file. Unreadable metadata: {exc}") from exc
    name = fields.get("name")
    version = fields.get("version")
    if not isinstance(name, str) or not name:
        raise DistributionError("Invalid distribution file. Metadata has no Name.")
    if not isinstance(version, str) or not version:
        raise DistributionError("Invalid distribution file. Metadata has no Version.")
    validate_project_name(name)
    try:
        Version(version)
    except (InvalidVersion, ValueError) as exc:
        raise DistributionError(f"Invalid version in metadata: {version[:100]!r}") from exc
    flat: dict[str, str | list[str]] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            flat[key] = value
        elif isinstance(value, list):
            flat[key] = [str(item) for item in value]
        elif isinstance(value, dict):  # project_urls
            flat[key] = [f"{label}, {url}" for label, url in value.items()]
    summary = fields.get("summary")
    requires_python = fields.get("requires_python")
    return CoreMetadata(
        name=name,
        version=version,
        summary=summary if isinstance(summary, str) else "",
        requires_python=requires_python if isinstance(requires_python, str) else "",
        fields=flat,
    )


def _read_member(handle: IO[bytes] | None, size: int, what: str) -> bytes:
    if handle is None:
        raise DistributionError(f"Invalid distribution file. {what} is not a regular file.")
    if size > MAX_METADATA_BYTES:
        handle.close()  # an open zip member keeps the archive's file open
        raise DistributionError(f"Invalid distribution file. {what} is too large.")
    with handle:
        return handle.read(MAX_METADATA_BYTES + 1)[:MAX_METADATA_BYTES]


def _read_wheel_metadata(path: Path | BinaryIO, info: FilenameInfo) -> bytes:
    try:
        with _open_zip(path) as archive:
            names = set(archive.namelist())
            dist_info = _dist_info_dir(names, info)
            for required in ("METADATA", "WHEEL", "RECORD"):
                if f"{dist_info}/{required}" not in names:
                    raise DistributionError(
                        f"Wheel {info.filename!r} does not contain the required {required} "
                        f"file: {dist_info}/{required}"
                    )
            member = archive.getinfo(f"{dist_info}/METADATA")
            raw = _read_member(archive.open(member), member.file_size, "METADATA")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DistributionError(f"Invalid distribution file. File is not a zipfile: {exc}") from exc
    # CRC errors, truncated members, encrypted entries; zlib.error for corrupt deflate data
    except (OSError, RuntimeError, zlib.error) as exc:
        raise DistributionError(f"Invalid distribution file. {exc}") from exc
    return raw


def _dist_info_dir(names: set[str], info: FilenameInfo) -> str:
    """The wheel's .dist-info directory. Warehouse derives it from the filename's first two
    parts; a legacy file renamed by hand (`Foo.Bar-1.0-…whl` holding `foo_bar-1.0.dist-info`)
    is found as installers find it: the one directory whose name and version are the file's."""
    name_part, version_part, _rest = info.filename.split("-", 2)
    expected = f"{name_part}-{version_part}.dist-info"
    if f"{expected}/METADATA" in names:
        return expected
    for name in sorted(names):
        top, _, rest = name.partition("/")
        stem = top.removesuffix(".dist-info")
        if rest != "METADATA" or stem == top or stem.count("-") != 1:
            continue
        project, version = stem.split("-")
        try:
            if canonicalize_name(project) == info.project and Version(version) == info.version:
                return top
        except (InvalidVersion, ValueError):
            continue
    return expected  # absent: the caller names what is missing


def _single_top_level(names: list[str], filename: str) -> str:
    tops = {name.split("/", 1)[0] for name in names if name.strip("/")}
    if len(tops) != 1:
        raise DistributionError(
            f"Invalid distribution file. Incorrect number of top-level directories in {filename}"
        )
    return tops.pop()


def _read_tar_sdist_metadata(path: Path | BinaryIO, filename: str) -> bytes:
    """Stream the tarball once: members one at a time (never the whole list in memory),
    inflated bytes and time capped, then the rest of the gzip stream read so a truncated or
    corrupt file fails its length and CRC check (tarfile stops at the end-of-archive block
    and never reaches the gzip trailer)."""
    tops: set[str] = set()
    found: dict[str, bytes] = {}  # top-level directory -> its PKG-INFO
    try:
        with gzip.open(path, "rb") as stream:
            capped = InflationCap(stream, _size(path), "the tarball")
            with tarfile.open(fileobj=capped, mode="r|") as archive:  # type: ignore[call-overload]
                for count, member in enumerate(archive, start=1):
                    if count > MAX_ARCHIVE_MEMBERS:
                        raise DistributionError(
                            "Invalid distribution file. More than "
                            f"{MAX_ARCHIVE_MEMBERS} members in {filename}."
                        )
                    parts = member.name.split("/")
                    if member.name.strip("/"):
                        tops.add(parts[0])
                        _single_top_level(list(tops), filename)
                    if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                        handle = archive.extractfile(member)
                        found[parts[0]] = _read_member(handle, member.size, "PKG-INFO")
                    archive.members.clear()  # a stream needs no index; keep memory flat
            capped.drain()
    except gzip.BadGzipFile:
        raise DistributionError(
            "Invalid distribution file. File is not a tarfile: not a gzip file"
        ) from None
    except EOFError:
        raise DistributionError(
            "Invalid distribution file. File is not a tarfile: the gzip stream ends early"
        ) from None
    except (tarfile.TarError, OSError, zlib.error) as exc:
        raise DistributionError(f"Invalid distribution file. File is not a tarfile: {exc}") from exc
    top = _single_top_level(list(tops), filename)
    if top in found:
        return found[top]
    raise DistributionError(f"Invalid distribution file. PKG-INFO not found at {top}/PKG-INFO")


class InflationCap:
    """A read-only stream that counts what it returns and refuses to go past
    max(MIN_INFLATED_ALLOWANCE, MAX_INFLATION_RATIO x the compressed size) or to run
    longer than MAX_INSPECT_SECONDS: a bomb costs a bounded amount of CPU, then a 400."""

    def __init__(self, stream: BinaryIO, compressed_size: int, what: str) -> None:
        self._stream = stream
        self._limit = max(MIN_INFLATED_ALLOWANCE, MAX_INFLATION_RATIO * compressed_size)
        self._deadline = time.monotonic() + MAX_INSPECT_SECONDS
        self._what = what
        self.inflated = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > 1 << 20:
            size = 1 << 20  # bounded reads, so the caps are checked often
        data = self._stream.read(size)
        self.inflated += len(data)
        if self.inflated > self._limit:
            raise DistributionError(
                f"Invalid distribution file. {self._what} inflates to more than "
                f"{self._limit} bytes (an archive bomb?)."
            )
        if time.monotonic() > self._deadline:
            raise DistributionError(
                f"Invalid distribution file. Reading {self._what} took longer than "
                f"{MAX_INSPECT_SECONDS:g} seconds."
            )
        return data

    def drain(self) -> None:
        """Read to the end, under the same caps."""
        while self.read(1 << 20):
            pass


class _MemoryFile(io.BytesIO):
    """A file's bytes in memory that fail as the file would: a damaged archive's seek
    before the start is OSError(EINVAL) on a file but ValueError (or a silent clamp) on a
    BytesIO, which the checks would not turn into the same refusal."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self._length = len(content)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return super().seek(offset, whence)


def _size(source: Path | BinaryIO) -> int:
    """Bytes in a file, or in an open one (whose position is kept)."""
    if isinstance(source, Path):
        return source.stat().st_size
    here = source.tell()
    try:
        return source.seek(0, io.SEEK_END)
    finally:
        source.seek(here)


def _open_zip(path: Path | BinaryIO) -> zipfile.ZipFile:
    """ZipFile, after checking the end-of-central-directory record: zipfile reads the whole
    central directory into memory and builds an object per entry before anyone can count
    them (a million-entry directory cost ~520 MB)."""
    entries, size = zip_directory_size(path)
    if entries > MAX_ARCHIVE_MEMBERS:
        raise DistributionError(
            f"Invalid distribution file. {entries} members; the limit is {MAX_ARCHIVE_MEMBERS}."
        )
    if size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise DistributionError(
            f"Invalid distribution file. Zip central directory of {size} bytes; "
            f"the limit is {MAX_CENTRAL_DIRECTORY_BYTES}."
        )
    return zipfile.ZipFile(path)


def zip_directory_size(path: Path | BinaryIO) -> tuple[int, int]:
    """(entries, central directory bytes) as the zip's end record claims them (zip64 too),
    read with zipfile's own end-record parser; zipfile.BadZipFile when there is none."""
    with path.open("rb") if isinstance(path, Path) else contextlib.nullcontext(path) as handle:
        try:
            end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        except OSError:
            end = None
    if not end:
        raise zipfile.BadZipFile("File is not a zip file")
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    return int(entries), int(size)


def _read_zip_sdist_metadata(path: Path | BinaryIO, filename: str) -> bytes:
    try:
        with _open_zip(path) as archive:
            top = _single_top_level(archive.namelist(), filename)
            wanted = f"{top}/PKG-INFO"
            try:
                member = archive.getinfo(wanted)
            except KeyError:
                raise DistributionError(
                    f"Invalid distribution file. PKG-INFO not found at {wanted}"
                ) from None
            return _read_member(archive.open(member), member.file_size, "PKG-INFO")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DistributionError(f"Invalid distribution file. File is not a zipfile: {exc}") from exc
    except (OSError, RuntimeError, zlib.error) as exc:
        raise DistributionError(f"Invalid distribution file. {exc}") from exc
