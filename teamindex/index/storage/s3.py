"""Package files as objects in an S3-compatible bucket (`--storage s3://bucket/prefix`).

Layout under the prefix, the local data dir's names: `packages/<project>/<filename>` (and its
`.metadata` beside it) and `docs/<project>/<version>/<build>/...`. An upload is hashed while
it streams into a local temp file (as on disk), then sent with boto3's multipart transfer
(each part checksummed by the client and checked by the server), then HEAD-checked: size,
the sha256 recorded in the object's metadata and, for a single-part object, the server's
own SHA-256 checksum. Only then does `publish` return and the caller commit the row, so a
failed or killed upload leaves no row; an object without a row is what `check` reports and
`check --repair` removes once it is older than the grace period.

boto3 is imported here only: serve loads this module when the storage is S3 (cold start).
"""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import StorageUnavailable, Store, StoredObject
from .local import METADATA_SUFFIX, StorageError, TempFiles, check_names, digest_file

PACKAGES = "packages/"
INCOMING = "incoming/"  # staged uploads (stage), named after their process's owner token
# One CopyObject request copies at most 5 GiB; --max-upload-size above it is refused.
MAX_COPY_BYTES = 5 << 30
PART_SIZE = 16 << 20  # multipart above this, in parts of this size
TRANSFER = TransferConfig(
    multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
)
# Every wait on the store is bounded: a store that stops answering fails the request.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
SHA256_KEY = "sha256"  # x-amz-meta-sha256: the hex digest the index computed


def make_client(settings: Any) -> Any:
    """A boto3 S3 client from the settings, else boto3's own variables and files."""
    session = boto3.session.Session(
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=settings.s3_secret_access_key or None,
        region_name=settings.s3_region or None,
    )
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},  # S3-compatible stores rarely have bucket DNS names
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=max(10, settings.threads * 2),
    )
    return session.client("s3", endpoint_url=settings.s3_endpoint_url or None, config=config)


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """boto errors as OSErrors: a missing object is FileNotFoundError, anything else
    StorageUnavailable with a one-line reason (never the credentials)."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise FileNotFoundError(what) from None
        raise StorageUnavailable(f"object store refused {what}: {code or exc}") from None
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object store unreachable for {what}: {exc}") from None


class S3Storage(TempFiles, Store):
    """Distribution files in one bucket under one prefix; uploads in flight in tmp/."""

    local = False

    def __init__(self, client: Any, bucket: str, prefix: str, tmp_dir: Path) -> None:
        super().__init__(tmp_dir)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix  # "" or "some/prefix/"
        self._staged: dict[Path, tuple[str, str]] = {}  # temp file -> (staging key, sha256)
        self._staged_lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, path: PurePosixPath | Path) -> str:
        """The object key of a stored path (`<project>/<filename>`)."""
        return f"{self.prefix}{PACKAGES}{path.as_posix()}"

    def ensure_dirs(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with s3_errors(f"bucket {self.bucket!r}"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchBucket"}:
                    raise StorageError(f"no bucket {self.bucket!r} at the S3 endpoint") from None
                raise

    def file_path(self, project: str, filename: str) -> Path:
        check_names(project, filename)
        # A key path, not a file here: any attempt to open it locally fails loudly.
        return cast(Path, PurePosixPath(project, filename))

    def metadata_path(self, project: str, filename: str) -> Path:
        return self.file_path(project, filename + METADATA_SUFFIX)

    def stage(self, temp: Path, sha256: str) -> None:
        key = f"{self.prefix}{INCOMING}{self.owner.token}-{uuid.uuid4().hex}"
        self.put_file(temp, key, sha256)
        with self._staged_lock:
            self._staged[temp] = (key, sha256)

    def unstage(self, temp: Path) -> None:
        with self._staged_lock:
            staged = self._staged.pop(temp, None)
        if staged is not None:
            with contextlib.suppress(OSError):
                self.delete_key(staged[0])

    def publish(
        self, temp: Path, final: Path, *, sync: bool = True, sha256: str | None = None
    ) -> None:
        """The staged object copied to its name inside the store (or, not staged, the
        upload itself), then checked: only then may the caller commit the row."""
        with self._staged_lock:
            staged = self._staged.pop(temp, None)
        if staged is None:
            self.put_file(temp, self.key(final), sha256 or digest_file(temp).sha256)
        else:
            try:
                self._place_staged(staged, temp.stat().st_size, self.key(final))
            finally:  # placed or not, the staging object has served
                with contextlib.suppress(OSError):
                    self.delete_key(staged[0])
        temp.unlink()

    def _place_staged(self, staged: tuple[str, str], size: int, key: str) -> None:
        source, sha256 = staged
        with s3_errors(f"the copy to {key!r}"):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                MetadataDirective="COPY",
            )
        problem = self.verify(key, size, sha256)
        if problem is not None:
            with contextlib.suppress(OSError):
                self.delete_key(key)
            raise StorageUnavailable(f"the object store holds other bytes for {key!r}: {problem}")

    def put_file(self, source: Path, key: str, sha256: str) -> None:
        """Upload a local file as `key` and check what the store then holds; on a mismatch
        the object is removed and StorageError raised, so no row can name it."""
        size = source.stat().st_size
        with s3_errors(f"the upload of {key!r}"), source.open("rb") as handle:
            self.client.upload_fileobj(
                handle,
                self.bucket,
                key,
                ExtraArgs={
                    "Metadata": {SHA256_KEY: sha256},
                    "ChecksumAlgorithm": "SHA256",
                    "ContentType": _content_type(key),
                },
                Config=TRANSFER,
            )
        problem = self.verify(key, size, sha256)
        if problem is not None:
            with contextlib.suppress(OSError):
                self.delete_key(key)
            raise StorageUnavailable(f"the object store holds other bytes for {key!r}: {problem}")

    def verify(self, key: str, size: int, sha256: str) -> str | None:
        """What is wrong with the stored object (None: size and hashes as expected)."""
        with s3_errors(f"the check of {key!r}"):
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != size:
            return f"{head['ContentLength']} bytes, expected {size}"
        if head.get("Metadata", {}).get(SHA256_KEY) != sha256:
            return "its recorded sha256 differs"
        checksum = head.get("ChecksumSHA256")
        # A multipart object's checksum is one of its parts' checksums ("...-N"); the
        # server checked each part against the client's on the way in.
        if checksum and "-" not in checksum and base64.b64decode(checksum).hex() != sha256:
            return "the store's SHA-256 differs"
        return None

    def remove(self, *paths: Path) -> None:
        for path in paths:
            self.delete_key(self.key(path))

    def delete_key(self, key: str) -> None:
        with s3_errors(f"the removal of {key!r}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, path: Path) -> bool:
        try:
            self.head(self.key(path))
        except FileNotFoundError:
            return False
        return True

    def head(self, key: str) -> dict[str, Any]:
        with s3_errors(repr(key)):
            return cast(dict[str, Any], self.client.head_object(Bucket=self.bucket, Key=key))

    def sync_published(self, paths: Iterable[Path]) -> None:
        """Nothing to do: a finished PUT is durable."""

    def open_read(self, path: Path) -> IO[bytes]:
        """One GET: its answer gives the size and the first bytes (a HEAD first cost a
        second round trip per download), and a missing object fails here, before any
        header is sent."""
        key = self.key(path)
        with s3_errors(repr(key)):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        reader = ObjectReader(self.client, self.bucket, key, int(answer["ContentLength"]))
        reader.adopt(answer["Body"])
        return cast(IO[bytes], reader)

    def open_key(self, key: str, size: int) -> ObjectReader:
        return ObjectReader(self.client, self.bucket, key, size)

    def objects(self) -> Iterator[StoredObject]:
        start = self.prefix + PACKAGES
        for key, size, modified in self.list_keys(start):
            yield StoredObject(PurePosixPath(key.removeprefix(start)), size, _age(modified))

    def list_keys(self, start: str) -> Iterator[tuple[str, int, datetime]]:
        """(key, size, last modified) of every object whose key starts with `start`."""
        paginator = self.client.get_paginator("list_objects_v2")
        with s3_errors(f"the listing of {start!r}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield item["Key"], int(item["Size"]), item["LastModified"]

    def download_url(self, path: Path, expiry: int) -> str:
        """A URL that lets its holder GET this one object for `expiry` seconds."""
        with s3_errors(f"a download URL for {path}"):
            return cast(
                str,
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self.key(path)},
                    ExpiresIn=expiry,
                ),
            )


def _content_type(key: str) -> str:
    """What the store answers a presigned GET with: as files.download would."""
    return "text/plain" if key.endswith(METADATA_SUFFIX) else "application/octet-stream"


def _age(modified: datetime) -> float:
    return (datetime.now(timezone.utc) - modified.astimezone(timezone.utc)).total_seconds()


class ObjectReader(io.RawIOBase):
    """A seekable, read-only view of one object: each read after a seek asks the store for
    the bytes from there on (a Range GET), so a Range request costs one ranged GET."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self.size = size
        self._pos = 0
        self._body: Any = None

    def adopt(self, body: Any) -> None:
        """Use an already open body that starts at the current position."""
        self._drop_body()
        self._body = body

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        position = max(0, base + offset)
        if position != self._pos:
            self._drop_body()
            self._pos = position
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self.size:
            return 0
        if self._body is None:
            with s3_errors(repr(self._key)):
                self._body = self._client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-"
                )["Body"]
        with s3_errors(repr(self._key)):
            data = self._body.read(len(buffer))
        if not data:
            raise StorageUnavailable(f"object {self._key!r} ended before {self.size} bytes")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._drop_body()
        super().close()

    def _drop_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None
