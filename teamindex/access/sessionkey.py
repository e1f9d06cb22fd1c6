"""The data dir's session signing key. No Flask: `serve` makes it before it forks its
workers (boot.prepare), and Flask is loaded only later, by each worker (issue 14)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_FILE = "secret_key"  # noqa: S105 - a file name; the key is in the file


def load_secret_key(data_dir: Path) -> bytes:
    """The data dir's random session key, created (0600) on first start and kept, so sessions
    survive restarts and every server process of one data dir signs alike."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path} is too short to be a session key; delete it to make a new one")
    return key.encode()
