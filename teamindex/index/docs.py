"""Pure rules for uploaded documentation zips: which entries may be extracted. No Flask, no I/O.

A docs zip comes from CI and is unpacked on the index's disk, so every entry is checked
before a byte is written: a relative POSIX path without `..`, drive letters or backslashes
(zip slip), regular files and directories only (no symlinks, devices or encrypted entries),
and limits on the number of entries, their sizes and their compression ratio (zip bombs).
The sizes come from the zip's central directory; extraction also counts the bytes it writes
(docstore.py), so a lying header cannot get past the limits either.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

INDEX_PAGE = "index.html"
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_COMPONENT = 255  # bytes, the usual filesystem limit for one name


class DocsError(ValueError):
    """The zip cannot be accepted as documentation; str() says why."""


@dataclass(frozen=True)
class DocsLimits:
    max_entries: int = 20_000
    max_file_bytes: int = 64 << 20
    max_total_bytes: int = 512 << 20
    max_ratio: int = 200  # uncompressed / compressed, for entries big enough to matter
    ratio_floor: int = 1 << 20  # entries below this size may compress better than max_ratio
    max_path_length: int = 1024


DEFAULT_LIMITS = DocsLimits()


@dataclass(frozen=True)
class ZipEntry:
    """What the rules need to know about one zip member (see from_zipinfo)."""

    name: str
    size: int
    compressed_size: int
    mode: int = 0  # Unix st_mode from the external attributes; 0 when not made on Unix
    encrypted: bool = False

    @classmethod
    def from_zipinfo(cls, info: zipfile.ZipInfo) -> ZipEntry:
        mode = (info.external_attr >> 16) if info.create_system == 3 else 0  # 3 = Unix
        return cls(
            name=info.filename,
            size=info.file_size,
            compressed_size=info.compress_size,
            mode=mode,
            encrypted=bool(info.flag_bits & 0x1),
        )

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/") or stat.S_ISDIR(self.mode)


@dataclass(frozen=True)
class Member:
    """A file to extract: the zip member's name and where it goes, relative to the root."""

    name: str
    target: PurePosixPath
    size: int


def safe_relative_path(name: str, limits: DocsLimits = DEFAULT_LIMITS) -> PurePosixPath:
    """The member name as a safe relative path, or DocsError naming the problem."""
    if not name.strip("/"):
        raise DocsError(f"empty entry name {name!r}")
    if "\\" in name:
        raise DocsError(f"backslash in entry {name!r}")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise DocsError(f"control character in entry {name!r}")
    if name.startswith("/"):
        raise DocsError(f"absolute path in entry {name!r}")
    if _DRIVE.match(name):
        raise DocsError(f"drive letter in entry {name!r}")
    if len(name.encode()) > limits.max_path_length:
        raise DocsError(f"entry name longer than {limits.max_path_length} bytes: {name[:60]!r}...")
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in {"", ".", ".."}:
            raise DocsError(f"'{part or '//'}' in entry {name!r}")
        if len(part.encode()) > MAX_COMPONENT:
            raise DocsError(f"path component longer than {MAX_COMPONENT} bytes in {name!r}")
    return PurePosixPath(*parts)


def _check_kind(entry: ZipEntry) -> None:
    if entry.encrypted:
        raise DocsError(f"encrypted entry {entry.name!r}")
    kind = stat.S_IFMT(entry.mode)
    if stat.S_ISLNK(entry.mode):
        raise DocsError(f"symbolic link {entry.name!r}")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DocsError(f"special file {entry.name!r}")


def _check_sizes(entry: ZipEntry, limits: DocsLimits) -> None:
    if entry.size < 0 or entry.compressed_size < 0:
        raise DocsError(f"negative size for {entry.name!r}")
    if entry.size > limits.max_file_bytes:
        raise DocsError(
            f"{entry.name!r} is {entry.size} bytes; the limit is {limits.max_file_bytes}"
        )
    if entry.size >= limits.ratio_floor and entry.size > limits.max_ratio * max(
        entry.compressed_size, 1
    ):
        raise DocsError(f"{entry.name!r} compresses more than {limits.max_ratio}:1 (a zip bomb?)")


def common_root(paths: Iterable[PurePosixPath]) -> PurePosixPath:
    """The directory every path lives under, when the zip wraps the site in one folder
    (`zip -r docs.zip build/html` stores build/html/index.html)."""
    root = PurePosixPath()
    listed = [path.parts for path in paths]
    while listed and all(len(parts) > 1 for parts in listed):
        heads = {parts[0] for parts in listed}
        if len(heads) != 1:
            break
        root = root / heads.pop()
        listed = [parts[1:] for parts in listed]
    return root


def plan_extraction(
    entries: Sequence[ZipEntry], limits: DocsLimits = DEFAULT_LIMITS
) -> list[Member]:
    """Check every entry and return the files to extract, relative to the site's root
    (a single wrapping folder is removed). The site must have an index.html at its root."""
    if len(entries) > limits.max_entries:
        raise DocsError(f"{len(entries)} entries; the limit is {limits.max_entries}")
    files: list[tuple[ZipEntry, PurePosixPath]] = []
    dirs: set[PurePosixPath] = set()
    total = 0
    for entry in entries:
        path = safe_relative_path(entry.name, limits)
        _check_kind(entry)
        if entry.is_dir:
            dirs.add(path)
            continue
        _check_sizes(entry, limits)
        total += entry.size
        if total > limits.max_total_bytes:
            raise DocsError(f"more than {limits.max_total_bytes} bytes uncompressed")
        files.append((entry, path))
    if not files:
        raise DocsError("the zip holds no files")
    seen: set[PurePosixPath] = set()
    parents: set[PurePosixPath] = set()
    for _entry, path in files:
        if path in seen:
            raise DocsError(f"duplicate entry {str(path)!r}")
        seen.add(path)
        parents.update(path.parents)
    clash = seen & (parents | dirs)
    if clash:
        raise DocsError(f"{str(min(clash))!r} is both a file and a directory")
    root = common_root(path for _entry, path in files)
    members = [Member(entry.name, path.relative_to(root), entry.size) for entry, path in files]
    if not any(member.target == PurePosixPath(INDEX_PAGE) for member in members):
        where = f" (nor in {str(root)!r})" if root != PurePosixPath() else ""
        raise DocsError(f"no {INDEX_PAGE} at the root of the zip{where}")
    return members
