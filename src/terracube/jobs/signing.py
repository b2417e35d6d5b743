"""Signed, expiring download links for job results (no Authorization header needed).

The signature is an HMAC-SHA256 over the job, the run that produced the results, the asset
name and the expiry time, so a link stops working when it expires, when the job is started
again (new run) or when the job is deleted. The key comes from TERRACUBE_SECRET_KEY or is
generated once into data_dir/secret.key (readable by the owner only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from terracube import errors
from terracube.settings import Settings

KEY_FILE = "secret.key"


class ResultLinkInvalid(errors.OpenEOError):
    """The signature of a result link does not match (tampered with or truncated)."""

    code = "ResultLinkInvalid"
    status = 403


class UrlSigner:
    """Signs and checks (job, run, asset, expires) tuples."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self.key = key
        self.ttl = ttl_seconds

    def expiry(self, now: float | None = None) -> int:
        return int((now if now is not None else time.time()) + self.ttl)

    def sign(self, job_id: str, run_id: str, asset: str, expires: int) -> str:
        message = f"{job_id}\n{run_id}\n{asset}\n{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def check(self, job_id: str, run_id: str, asset: str, expires: str | None,
              signature: str | None, now: float | None = None) -> None:
        """ResultLinkInvalid (403) for a wrong signature, ResultLinkExpired (410) if too old."""
        try:
            expires_at = int(expires or "")
        except ValueError:
            raise ResultLinkInvalid(
                "This result link is incomplete (no valid 'expires'); request the results "
                "again with GET /jobs/{job_id}/results for fresh links.") from None
        expected = self.sign(job_id, run_id, asset, expires_at)
        if not signature or not hmac.compare_digest(expected, signature):
            raise ResultLinkInvalid(
                "This result link is not valid (wrong signature, or the job was started again "
                "since); request the results again with GET /jobs/{job_id}/results.")
        if expires_at < (now if now is not None else time.time()):
            raise errors.ResultLinkExpired(
                "The link to the batch job result has expired; request the results again with "
                "GET /jobs/{job_id}/results for fresh links.")


def signing_key(settings: Settings) -> bytes:
    """The configured key, or the one in data_dir/secret.key (created on first use)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # fails if another process created the key first: use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key; delete it to generate a new one")
    return key.encode()
