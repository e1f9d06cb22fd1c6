"""Which docs store goes with the configured storage (kept apart from both, so neither
imports the other and boto3 loads only when S3 is configured)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from .docstore import DOCS_DIR, DocsStore
from .storage import Store


def open_docs(data_dir: Path, storage: Store) -> DocsStore:
    """The docs beside the distribution files: in the data dir, or in the bucket."""
    if storage.local:
        return DocsStore.in_data_dir(data_dir)
    from .docstore_s3 import S3DocsStore
    from .storage.s3 import S3Storage

    return S3DocsStore(data_dir / DOCS_DIR, cast(S3Storage, storage))
