"""Running behind a reverse proxy: the root path and the X-Forwarded-* headers of trusted proxies.

`ProxyMiddleware` (the app's outermost layer) rewrites each request's ASGI scope the way the
rest of the app, Starlette's `request.base_url` and `api/deps.py`'s URL helpers, expect:

- `root_path` is the public path prefix (TERRACUBE_ROOT_PATH, or a trusted proxy's
  `X-Forwarded-Prefix`), and `path` starts with it (the ASGI convention Starlette routes by),
  whether the proxy stripped the prefix before forwarding or not;
- from a peer listed in TERRACUBE_FORWARDED_ALLOW_IPS only: `X-Forwarded-Proto` sets the
  scheme, `X-Forwarded-Host` the Host header, `X-Forwarded-For` the client address (changed
  in place: uvicorn's access log shows it), `X-Forwarded-Prefix` the root path. From any other peer
  these headers are ignored: a client cannot make the server emit links to another host.
- `scope[ORIGIN_KEY]` is the origin (scheme://host[:port]) that links which must not follow an
  untrusted Host header (signed result links, docs/administration/proxy.md) are built from:
  what a trusted proxy said, else the address and port the connection really reached.

uvicorn's own proxy-header handling is switched off (`terracube serve`): it trusts 127.0.0.1
by default, which on a shared machine is every local user, and knows nothing of the prefix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

ORIGIN_KEY = "terracube.origin"  # the scope key of the trusted origin

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_trusted(spec: str) -> tuple[bool, list[_Network]]:
    """('*' given, the networks) of a comma-separated TERRACUBE_FORWARDED_ALLOW_IPS value;
    ValueError names an entry that is neither an address nor a network."""
    everyone, networks = False, []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        if entry == "*":
            everyone = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"forwarded_allow_ips: {entry!r} is neither an IP address nor a "
                             "network (CIDR)") from None
    return everyone, networks


def host_port(host: str, port: int | None, scheme: str) -> str:
    """host[:port] for a URL: IPv6 addresses in brackets, the scheme's default port left out."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"


def _first(value: str | None) -> str | None:
    """The first entry of a comma-separated header (the one the outermost proxy set)."""
    if not value:
        return None
    first = value.split(",")[0].strip()
    return first or None


class ProxyMiddleware:
    """Applies the root path and trusted X-Forwarded-* headers to every HTTP request."""

    def __init__(self, app: ASGIApp, root_path: str = "", forwarded_allow_ips: str = "") -> None:
        self.app = app
        self.root_path = _prefix(root_path)
        self.everyone, self.networks = parse_trusted(forwarded_allow_ips)

    def trusts(self, address: str | None) -> bool:
        if self.everyone:
            return True
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope.get("headers") or ():
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        # The path below any root path the ASGI server already put in front (uvicorn's
        # --root-path prepends it): re-prefixed below with the prefix of this request.
        path, raw_path = _strip(scope)
        prefix = self.root_path
        client = scope.get("client")
        scheme = scope.get("scheme", "http")
        if self.trusts(client[0] if client else None):
            proto = (_first(headers.get("x-forwarded-proto")) or "").lower()
            if proto in _DEFAULT_PORTS:
                scheme = proto if scope["type"] == "http" else _ws(proto)
                scope["scheme"] = scheme
            forwarded_host = _first(headers.get("x-forwarded-host"))
            if forwarded_host:
                scope["headers"] = [(k, v) for k, v in scope.get("headers") or ()
                                    if k.lower() != b"host"]
                scope["headers"].append((b"host", forwarded_host.encode("latin-1")))
            forwarded_prefix = headers.get("x-forwarded-prefix")
            if forwarded_prefix is not None:
                prefix = _prefix(_first(forwarded_prefix) or "")
            real_client = _client(headers.get("x-forwarded-for"), self.trusts)
            if real_client:
                scope["client"] = (real_client, 0)
            host = forwarded_host or headers.get("host")
            origin = f"{_http(scheme)}://{host}" if host else _socket_origin(scope, scheme)
        else:
            origin = _socket_origin(scope, scheme)
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            # A proxy that forwards the prefix instead of stripping it (nginx without the
            # trailing /, jupyter-server-proxy's /proxy/absolute/): the same request.
            path = path[len(prefix):] or "/"
            raw_path = raw_path[len(prefix.encode()):] or b"/"
        scope["root_path"] = prefix
        scope["path"] = prefix + path
        scope["raw_path"] = prefix.encode() + raw_path
        scope[ORIGIN_KEY] = origin
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path below its root path (what the routes match)."""
    return _strip(scope)[0]


def _prefix(value: str) -> str:
    value = value.strip().strip("/")
    return f"/{value}" if value else ""


def _strip(scope: Scope) -> tuple[str, bytes]:
    path: str = scope.get("path", "")
    raw: bytes = scope.get("raw_path") or path.encode()
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):] or "/"
        if raw.startswith(root.encode()):
            raw = raw[len(root.encode()):] or b"/"
    return path, raw


def _ws(proto: str) -> str:
    return {"http": "ws", "https": "wss"}.get(proto, proto)


def _http(scheme: str) -> str:
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def _socket_origin(scope: Scope, scheme: str) -> str:
    """The origin of the address the connection reached (never the Host header)."""
    server = scope.get("server")
    scheme = _http(scheme)
    if not server:  # e.g. a Unix socket: no address to name
        return f"{scheme}://localhost"
    host, port = server[0], server[1] if len(server) > 1 else None
    return f"{scheme}://{host_port(str(host), port, scheme)}"


def _client(forwarded_for: str | None, trusted: Callable[[str], bool]) -> str | None:
    """The client address of an X-Forwarded-For chain: the right-most entry that is not a
    trusted proxy itself (entries further left could be forged by the client)."""
    if not forwarded_for:
        return None
    entries: Iterable[str] = reversed([e.strip() for e in forwarded_for.split(",") if e.strip()])
    last = None
    for entry in entries:
        last = entry
        if not trusted(entry):
            return entry
    return last
