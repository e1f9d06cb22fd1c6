"""Where distribution files live: the interface (base.Store), the local data dir (local.py,
the reference) and an S3-compatible bucket (s3.py, loaded only when configured).

The names callers used when this was one module are re-exported here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import StorageUnavailable, Store, StoredObject
from .local import (
    METADATA_SUFFIX,
    PARALLEL_HASHING_AFTER,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    PRIVATE_FILES,
    Digests,
    HashingStalled,
    HashingTempFile,
    Storage,
    StorageError,
    TempFiles,
    check_names,
    digest_file,
    fsync_dir,
    fsync_path,
    make_private,
)

if TYPE_CHECKING:
    from ...config import Settings

__all__ = [
    "METADATA_SUFFIX",
    "PARALLEL_HASHING_AFTER",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILES",
    "PRIVATE_FILE_MODE",
    "Digests",
    "HashingStalled",
    "HashingTempFile",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "StoredObject",
    "TempFiles",
    "check_names",
    "digest_file",
    "fsync_dir",
    "fsync_path",
    "make_private",
    "open_storage",
]


def open_storage(settings: Settings) -> Store:
    """The configured backend: the data dir's packages/, or the bucket of `--storage`."""
    if not settings.storage:
        return Storage(settings.packages_dir, settings.tmp_dir)
    from .s3 import S3Storage, make_client  # boto3 only when S3 is configured

    return S3Storage(
        make_client(settings), settings.s3_bucket, settings.s3_prefix, settings.tmp_dir
    )
