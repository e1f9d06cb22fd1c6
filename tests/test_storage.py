"""teamindex.storage: hashing temp files, safe paths, atomic publish."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from teamindex.storage import (
    METADATA_SUFFIX,
    PARALLEL_HASHING_AFTER,
    HashingTempFile,
    Storage,
    digest_file,
)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    store = Storage(tmp_path / "packages", tmp_path / "tmp")
    store.ensure_dirs()
    return store


def expected_digests(data: bytes) -> tuple[int, str, str, str]:
    return (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.blake2b(data, digest_size=32).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [b""],
        [b"hello"],
        [b"hello", b" ", b"world"],
        [bytes(range(256)) * 40, b"\x00" * 70_000, b"tail"],
        # past PARALLEL_HASHING_AFTER: md5 and blake2 continue on the helper thread
        [bytes([n % 251]) * 65_536 for n in range(100)] + [b"end"],
        [b"x" * (PARALLEL_HASHING_AFTER - 1), b"yz", bytearray(b"buffer")],
    ],
)
def test_hashing_temp_file_digests_match_hashlib(tmp_path, chunks):
    temp = HashingTempFile(tmp_path / "tmp")
    for chunk in chunks:
        temp.write(chunk)
    temp.finish()
    data = b"".join(chunks)
    digests = temp.digests()
    assert (digests.size, digests.sha256, digests.blake2_256, digests.md5) == expected_digests(data)
    # finish() rewinds, and the bytes on disk are the bytes hashed.
    assert temp.read() == data
    temp.close()
    assert temp.path.read_bytes() == data
    assert digest_file(temp.path) == digests


def test_hashing_temp_file_lives_in_its_directory_and_discard_removes_it(tmp_path):
    directory = tmp_path / "nested" / "tmp"
    temp = HashingTempFile(directory)
    assert temp.path.parent == directory
    assert temp.path.name.startswith("upload-")
    assert temp.path.name.endswith(".part")
    temp.write(b"x")
    temp.discard()
    assert temp.closed
    assert list(directory.iterdir()) == []
    temp.discard()  # twice is fine (teardown after a moved file)


def test_digest_file_large(tmp_path):
    data = b"0123456789abcdef" * 200_000  # > 1 MiB chunk size
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    digests = digest_file(path)
    assert (digests.size, digests.sha256, digests.blake2_256, digests.md5) == expected_digests(data)


@pytest.mark.parametrize(
    ("project", "filename"),
    [
        ("foo", "foo-1.0.tar.gz"),
        ("foo-bar", "foo_bar-1.0-py3-none-any.whl"),
        ("foo-bar", "foo_bar-1.0+local-py3-none-any.whl"),
    ],
)
def test_file_path_accepts_plain_names(storage, project, filename):
    path = storage.file_path(project, filename)
    assert path == storage.packages_dir / project / filename
    assert path.resolve().is_relative_to(storage.packages_dir.resolve())
    assert storage.metadata_path(project, filename) == path.with_name(filename + METADATA_SUFFIX)


@pytest.mark.parametrize(
    ("project", "filename", "message"),
    [
        ("Foo", "foo-1.0.tar.gz", "not a normalized project name"),
        ("foo_bar", "foo_bar-1.0.tar.gz", "not a normalized project name"),
        ("foo.bar", "x.tar.gz", "not a normalized project name"),
        ("", "foo-1.0.tar.gz", "not a normalized project name"),
        ("..", "foo-1.0.tar.gz", "not a normalized project name"),
        ("../etc", "passwd", "not a normalized project name"),
        ("foo/bar", "x.whl", "not a normalized project name"),
        ("foo", "../foo-1.0.tar.gz", "not a plain filename"),
        ("foo", "a/b.whl", "not a plain filename"),
        ("foo", "a\\b.whl", "not a plain filename"),
        ("foo", "..", "not a plain filename"),
        ("foo", ".", "not a plain filename"),
        ("foo", ".hidden.whl", "not a plain filename"),
        ("foo", "/etc/passwd", "not a plain filename"),
        ("foo", "x\0.whl", "not a plain filename"),
    ],
)
def test_file_path_refuses_unsafe_names(storage, project, filename, message):
    with pytest.raises(ValueError, match=message):
        storage.file_path(project, filename)


def test_file_path_refuses_empty_filename(storage):
    # An empty name would be the project directory itself.
    with pytest.raises(ValueError, match="not a plain filename"):
        storage.file_path("foo", "")


def test_write_temp_and_publish(storage):
    temp = storage.write_temp(b"Metadata-Version: 2.1\n")
    assert temp.parent == storage.tmp_dir
    final = storage.file_path("foo", "foo-1.0-py3-none-any.whl.metadata")
    storage.publish(temp, final)
    assert final.read_bytes() == b"Metadata-Version: 2.1\n"
    assert not temp.exists()
    assert list(storage.tmp_dir.glob("*.part")) == []


def test_publish_replaces_atomically(storage):
    final = storage.file_path("foo", "foo-1.0.tar.gz")
    storage.publish(storage.write_temp(b"one"), final)
    storage.publish(storage.write_temp(b"two"), final)
    assert final.read_bytes() == b"two"
    assert sorted(p.name for p in final.parent.iterdir()) == ["foo-1.0.tar.gz"]


def test_remove_is_idempotent(storage):
    final = storage.file_path("foo", "foo-1.0.tar.gz")
    storage.publish(storage.write_temp(b"x"), final)
    storage.remove(final, storage.metadata_path("foo", "foo-1.0.tar.gz"))
    assert not final.exists()
    storage.remove(final)


def test_new_temp_is_in_tmp_dir(storage):
    temp = storage.new_temp()
    try:
        assert temp.path.parent == storage.tmp_dir
    finally:
        temp.discard()
