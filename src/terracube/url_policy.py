"""Which URLs the server may fetch for a user (load_stac and its assets, STAC API searches):
http(s) only, to public internet addresses unless an administrator allows more
(TERRACUBE_FETCH_ALLOWED_HOSTS; docs/administration/security.md).

The rule is switched on for the code that runs on a user's behalf with `remote_only()`; the
STAC readers below it call `check_fetch(href)` before every document, file or redirect they
open, so a STAC item cannot make the server open its own files (file://, /vsi*, paths) or
reach its own network.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


class FetchRefused(ValueError):
    """A URL the server must not fetch for a user. The message never says whether a local
    file or port exists."""


@dataclass(frozen=True)
class FetchPolicy:
    """Hosts beyond the public internet that may be fetched: names, addresses or networks;
    entries that are absolute paths are folders whose files may be read."""

    allowed: tuple[str, ...] = ()

    def allows_local(self, href: str, parts: urllib.parse.SplitResult) -> bool:
        """True for a local file under an allowed folder (entries that are absolute paths)."""
        folders = [entry for entry in self.allowed if entry.startswith("/")]
        if not folders or parts.scheme.lower() not in ("", "file") or "/vsi" in href:
            return False
        path = os.path.realpath(urllib.parse.unquote(parts.path) if parts.scheme else href)
        return any(path == os.path.realpath(folder) or
                   path.startswith(os.path.realpath(folder).rstrip("/") + "/")
                   for folder in folders)

    def allows_address(self, host: str, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_global:
            return True
        for entry in self.allowed:
            if entry.lower() == host.lower():
                return True
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


_POLICY: contextvars.ContextVar[FetchPolicy | None] = contextvars.ContextVar(
    "terracube_fetch_policy", default=None)


@contextlib.contextmanager
def remote_only(allowed: Sequence[str] = ()) -> Iterator[FetchPolicy]:
    """Within this block (this thread or task), check_fetch enforces the rule."""
    policy = FetchPolicy(tuple(allowed))
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def active_policy() -> FetchPolicy | None:
    return _POLICY.get()


def check_fetch(href: str, policy: FetchPolicy | None = None) -> None:
    """Raise FetchRefused if `href` may not be fetched under the active (or given) policy;
    nothing is checked outside remote_only() (administrators' own collections)."""
    policy = policy or _POLICY.get()
    if policy is None:
        return
    try:
        parts = urllib.parse.urlsplit(str(href))
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
        parts = urllib.parse.urlsplit("")
    if policy.allows_local(str(href), parts):
        return
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise FetchRefused(
            "Only http:// and https:// URLs are read for a user: documents, links and asset "
            "hrefs that are local paths, file:// or GDAL /vsi paths are refused.")
    # "host:port" entries allow one port of a host only: the server's own API (job results
    # chained with load_stac) without opening the rest of that host's ports.
    default_port = 443 if parts.scheme.lower() == "https" else 80
    if f"{host.lower()}:{port or default_port}" in policy.allowed:
        return
    try:
        infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    except OSError:
        raise FetchRefused(f"The host {host!r} is unknown.") from None
    if not all(policy.allows_address(host, str(info[4][0])) for info in infos):
        raise FetchRefused(
            f"The host {host!r} is not a public internet address; an administrator can allow "
            "it with TERRACUBE_FETCH_ALLOWED_HOSTS.")
