"""Pure rules for distributions: filenames, archives and core metadata. No Flask here.

Names, versions and filenames are parsed by `packaging`; this module only decides which of
its answers the index accepts and reads the metadata out of the archive (PEP 427, 625, 658).
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from packaging.metadata import parse_email
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
        prefix = filename.split("-", 1)[0]
        expected = name.replace("-", "_")
        if prefix != expected:
            # PEP 427 escaping: the distribution part is the normalized name with "_" (uv
            # refuses to publish other spellings; Warehouse rejects them the same way).
            raise DistributionError(
                f"Filename {filename!r} should contain the normalized project name "
                f"{expected!r}, not {prefix!r}."
            )
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


def inspect_distribution(path: Path, info: FilenameInfo) -> Inspection:
    """Open the archive at *path*, read its core metadata and check it matches the filename."""
    if info.packagetype == "bdist_wheel":
        raw = _read_wheel_metadata(path, info)
        inspection = Inspection(parse_metadata(raw), raw)
    elif info.filename.endswith(".zip"):
        inspection = Inspection(parse_metadata(_read_zip_sdist_metadata(path, info.filename)), None)
    else:
        inspection = Inspection(parse_metadata(_read_tar_sdist_metadata(path, info.filename)), None)
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


def _read_wheel_metadata(path: Path, info: FilenameInfo) -> bytes:
    # Warehouse locates the dist-info directory from the filename's first two parts.
    name_part, version_part, _rest = info.filename.split("-", 2)
    dist_info = f"{name_part}-{version_part}.dist-info"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
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


def _single_top_level(names: list[str], filename: str) -> str:
    tops = {name.split("/", 1)[0] for name in names if name.strip("/")}
    if len(tops) != 1:
        raise DistributionError(
            f"Invalid distribution file. Incorrect number of top-level directories in {filename}"
        )
    return tops.pop()


def _read_tar_sdist_metadata(path: Path, filename: str) -> bytes:
    try:
        _check_gzip_stream(path)
        with tarfile.open(path, mode="r:gz") as archive:
            members = archive.getmembers()
            top = _single_top_level([m.name for m in members], filename)
            wanted = f"{top}/PKG-INFO"
            for member in members:
                if member.name == wanted and member.isfile():
                    return _read_member(archive.extractfile(member), member.size, "PKG-INFO")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DistributionError(f"Invalid distribution file. File is not a tarfile: {exc}") from exc
    raise DistributionError(f"Invalid distribution file. PKG-INFO not found at {wanted}")


def _check_gzip_stream(path: Path) -> None:
    """Read the whole gzip stream so a truncated or corrupt file fails its length and CRC
    check (tarfile stops at the end-of-archive block and never reaches the gzip trailer)."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except gzip.BadGzipFile:
        raise DistributionError(
            "Invalid distribution file. File is not a tarfile: not a gzip file"
        ) from None
    except EOFError:
        raise DistributionError(
            "Invalid distribution file. File is not a tarfile: the gzip stream ends early"
        ) from None


def _read_zip_sdist_metadata(path: Path, filename: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
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
