"""teamindex.index.storage: hashing temp files, safe paths, atomic publish."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from teamindex.index.storage import (
    METADATA_SUFFIX,
    PARALLEL_HASHING_AFTER,
    HashingStalled,
    HashingTempFile,
    Storage,
    digest_file,
)
from teamindex.index.storage import local as storage_module


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


# -- issue 10 (high 3): no order of calls may hang a worker ------------------------------------

BIG = bytes(range(256)) * 256  # 64 KiB, like werkzeug's chunks
PAST_HELPER = (
    PARALLEL_HASHING_AFTER // len(BIG) + 40
)  # chunks that start the helper and fill its queue


def _run_bounded(steps, seconds: float = 20.0):
    """Run `steps` in a thread; a hang fails the test instead of the test run."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = steps()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "HashingTempFile hung"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def _write(temp: HashingTempFile, chunks: int) -> bytes:
    for _ in range(chunks):
        temp.write(BIG)
    return BIG * chunks


# Each order: a list of (operation, argument). "w": write N chunks, "d": digests (checked
# against hashlib), "c": close, "x": discard, "f": finish. The bytes written are tracked.
ORDERS = {
    "digests after every chunk (the docs upload)": [("wd", PAST_HELPER)],
    "write after digests": [("w", PAST_HELPER), ("d", 0), ("w", PAST_HELPER), ("d", 0)],
    "digests twice": [("w", PAST_HELPER), ("d", 0), ("d", 0), ("c", 0)],
    "close before digests": [("w", PAST_HELPER), ("c", 0), ("d", 0), ("d", 0)],
    "close after digests, twice": [("w", PAST_HELPER), ("d", 0), ("c", 0), ("c", 0), ("d", 0)],
    "finish then digests": [("w", PAST_HELPER), ("f", 0), ("d", 0), ("c", 0)],
    "discard mid-stream": [("w", PAST_HELPER), ("x", 0), ("x", 0)],
    "discard after digests": [("w", PAST_HELPER), ("d", 0), ("x", 0)],
    "discard before the helper": [("w", 1), ("x", 0), ("c", 0)],
    "small, digests, then big": [("w", 1), ("d", 0), ("w", PAST_HELPER), ("d", 0), ("c", 0)],
}


@pytest.mark.parametrize("order", list(ORDERS.values()), ids=list(ORDERS))
def test_hashing_temp_file_any_call_order_finishes(tmp_path, order):
    temp = HashingTempFile(tmp_path / "tmp")
    written = bytearray()

    def steps() -> None:
        for op, count in order:
            if op == "w":
                written.extend(_write(temp, count))
            elif op == "wd":
                for _ in range(count):
                    written.extend(_write(temp, 1))
                    assert temp.digests().size == len(written) == temp.size
            elif op == "d":
                got = temp.digests()
                assert (got.size, got.sha256, got.blake2_256, got.md5) == expected_digests(
                    bytes(written)
                )
            elif op == "c":
                temp.close()
            elif op == "x":
                temp.discard()
            elif op == "f":
                temp.finish()

    _run_bounded(steps)
    temp.discard()
    assert not temp.path.exists()


def test_hashing_temp_file_write_after_close_is_refused(tmp_path):
    temp = HashingTempFile(tmp_path / "tmp")
    _run_bounded(lambda: _write(temp, PAST_HELPER))
    temp.close()
    with pytest.raises(ValueError, match="closed"):
        temp.write(b"more")
    temp.discard()


def test_a_stuck_hashing_helper_fails_the_upload_not_the_worker(tmp_path, monkeypatch):
    """Every wait on the helper is bounded: a stuck helper raises HashingStalled quickly."""
    release = threading.Event()
    real_run = storage_module._HashHelper._run

    def stuck_run(self):
        release.wait(30)
        real_run(self)

    monkeypatch.setattr(storage_module, "HASH_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(storage_module._HashHelper, "_run", stuck_run)
    temp = HashingTempFile(tmp_path / "tmp")
    started = time.monotonic()
    with pytest.raises(HashingStalled):
        _run_bounded(lambda: _write(temp, PAST_HELPER))
    with pytest.raises(HashingStalled):
        temp.digests()  # never a silently wrong digest
    _run_bounded(temp.discard)  # cleanup does not wait again
    assert time.monotonic() - started < 5
    assert not temp.path.exists()
    release.set()
