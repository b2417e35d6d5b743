"""Packages a UDF declares (PEP 723 inline script metadata), installed into cached environments.

A UDF may start with a `# /// script` block whose `dependencies` list requirement strings, as
CDSE documents it. Requirements the Python runtime already satisfies are used from the runtime.
The others are installed once per requirement set into `<data dir>/udf-envs/<hash>/`, keyed by
the normalised set (and the interpreter, platform and index settings), by the server or worker
process *before* the UDF runs: never inside the sandbox, which has no network. The sandbox then
binds that folder read-only and appends it to the runner's `sys.path` (engine/udf_sandbox.py),
so the runtime's own libraries always win and an environment only adds packages.

SECURITY: pip is run with `--only-binary :all:` (wheels only: installing a wheel runs no code of
the package, building an sdist would run its setup code with the server's permissions) and
without `--user`; direct references (`name @ URL`) are refused, so packages come only from the
index the administrator configured. Requirements are installed with `--no-deps` and their own
requirements are added round by round, skipping those the runtime satisfies: an environment never
holds a second copy of numpy, and a package that needs another version of a runtime library is
refused instead of shadowing it. Installations are atomic (a temporary folder renamed when
complete) and serialised per requirement set by a file lock, across the server's and the
workers' processes. Settings: udf_dependencies (off | allow-list | any), udf_allowed_packages,
udf_package_index, udf_find_links, udf_install_timeout_seconds
(docs/administration/udf-sandbox.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from terracube import errors

log = logging.getLogger(__name__)

ENVS_FOLDER = "udf-envs"
MANIFEST = ".terracube-env.json"
_MAX_ROUNDS = 8  # rounds of "install what the installed packages require"

# PEP 723 inline script metadata: the reference regular expression of the specification
_SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def declared_dependencies(code: str) -> list[str]:
    """The requirements a UDF declares in a PEP 723 `# /// script` block (none: [])."""
    blocks = [m.group("content") for m in _SCRIPT_BLOCK.finditer(code)
              if m.group("type") == "script"]
    if not blocks:
        return []
    if len(blocks) > 1:
        raise errors.ProcessParameterInvalid(
            "The UDF has more than one '# /// script' block.", argument="udf")
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in blocks[0].splitlines(keepends=True))
    try:
        deps = tomllib.loads(content).get("dependencies", [])
    except tomllib.TOMLDecodeError as exc:
        raise errors.ProcessParameterInvalid(
            f"The UDF's '# /// script' block is not valid TOML: {exc}.", argument="udf") from exc
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise errors.ProcessParameterInvalid(
            "The UDF's 'dependencies' must be a list of requirement strings.", argument="udf")
    return deps


@dataclass(frozen=True)
class EnvPolicy:
    """What the administrator allows (settings udf_*); `root` None: nothing is installed."""

    mode: str = "off"  # off | allow-list | any
    allowed: frozenset[str] = frozenset()
    index: str = ""  # "" pip's own configuration, "none" no index, else a URL
    find_links: tuple[str, ...] = ()
    root: Path | None = None
    timeout_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Any) -> EnvPolicy:
        if settings is None:
            return cls()
        return cls(mode=settings.udf_dependencies,
                   allowed=frozenset(canonicalize_name(n.strip()) for n in
                                     settings.udf_allowed_packages.split(",") if n.strip()),
                   index=settings.udf_package_index.strip(),
                   find_links=tuple(f.strip() for f in settings.udf_find_links.split(",")
                                    if f.strip()),
                   root=Path(settings.data_dir) / ENVS_FOLDER,
                   timeout_seconds=settings.udf_install_timeout_seconds)

    def describe(self) -> str:
        """One sentence for GET /udf_runtimes."""
        if self.mode == "off" or self.root is None:
            return ("Declared dependencies (PEP 723) must be satisfied by the libraries listed "
                    "here: this server installs no packages for UDFs.")
        source = ("the package index " + self.index if self.index not in ("", "none")
                  else "the server's package index" if self.index == "" else
                  "the server's own wheel folder")
        which = ("only these packages: " + ", ".join(sorted(self.allowed))
                 if self.mode == "allow-list" else "any package")
        return (f"Other packages a UDF declares (PEP 723 '# /// script' dependencies) are "
                f"installed from {source} before it runs ({which}; wheels only).")


def _runtime_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _parse(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise errors.ProcessParameterInvalid(
            f"The UDF declares the dependency {text!r}, which is not a valid requirement: "
            f"{exc}.", argument="udf") from exc


def _applies(req: Requirement, extras: set[str] | frozenset[str] = frozenset()) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))


def _conflict(req: Requirement, version: str) -> str:
    return f"{req} (the runtime has {req.name} {version})"


def to_install(requirements: list[str]) -> list[Requirement]:
    """The declared requirements the runtime lacks; ProcessParameterInvalid for a requirement
    that is not valid, a direct reference, or another version of a runtime library."""
    wanted, conflicts = [], []
    for text in requirements:
        req = _parse(text)
        if not _applies(req):
            continue
        if req.url:
            raise errors.ProcessParameterInvalid(
                f"The UDF declares {text!r}, a direct reference: packages are installed only "
                f"from the server's package index; declare it by name.", argument="udf")
        version = _runtime_version(req.name)
        if version is None:
            wanted.append(req)
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            conflicts.append(_conflict(req, version))
    if conflicts:
        raise errors.ProcessParameterInvalid(
            f"The UDF declares versions of the runtime's libraries that this server cannot "
            f"provide: {'; '.join(conflicts)}. Installed packages add to the runtime, they "
            f"never replace its libraries: GET /udf_runtimes lists them with their versions.",
            argument="udf")
    return wanted


def _normalised(reqs: list[Requirement]) -> list[str]:
    out = set()
    for r in reqs:
        extras = f"[{','.join(sorted(r.extras))}]" if r.extras else ""
        out.add(f"{canonicalize_name(r.name)}{extras}{r.specifier}")
    return sorted(out)


def _key(normalised: list[str], policy: EnvPolicy) -> str:
    ident = {"requirements": normalised, "python": sys.version_info[:2],
             "platform": sysconfig.get_platform(), "prefix": sys.prefix,
             "index": policy.index, "find_links": list(policy.find_links)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def environment_for(code: str, policy: EnvPolicy) -> Path | None:
    """The folder of installed packages the UDF `code` needs beyond the runtime (None: none),
    installed now if it is not cached; ProcessParameterInvalid (naming the package and why)
    when it is refused or cannot be installed."""
    wanted = to_install(declared_dependencies(code))
    if not wanted:
        return None
    names = [str(r) for r in wanted]
    if policy.mode == "off" or policy.root is None:
        raise errors.ProcessParameterInvalid(
            f"The UDF declares dependencies the runtime lacks: {'; '.join(names)} (not "
            f"installed), and this server installs no packages for UDFs. GET /udf_runtimes "
            f"lists the libraries (and versions) a UDF can use.", argument="udf")
    if policy.mode == "allow-list":
        refused = [r.name for r in wanted if canonicalize_name(r.name) not in policy.allowed]
        if refused:
            allowed = ", ".join(sorted(policy.allowed)) or "none"
            raise errors.ProcessParameterInvalid(
                f"The UDF declares {', '.join(refused)}, which this server does not install "
                f"for UDFs: its administrator allows only these packages: {allowed} "
                f"(GET /udf_runtimes).", argument="udf")
    normalised = _normalised(wanted)
    folder = policy.root / _key(normalised, policy)
    if folder.is_dir():
        return folder
    return _install_locked(folder, normalised, policy)


def _install_locked(folder: Path, normalised: list[str], policy: EnvPolicy) -> Path:
    """Install under a file lock: concurrent requests for the same set install it once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + policy.timeout_seconds + 60
    with open(folder.with_suffix(".lock"), "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise errors.ProcessParameterInvalid(
                        f"The packages the UDF declares ({', '.join(normalised)}) are being "
                        f"installed by another request that takes too long; try again later.",
                        argument="udf") from None
                time.sleep(0.2)
        try:
            if folder.is_dir():  # installed while we waited
                log.info("UDF environment %s installed by another request", folder.name)
                return folder
            for stale in folder.parent.glob(f".tmp-{folder.name}-*"):  # a killed install's
                shutil.rmtree(stale, ignore_errors=True)  # (we hold its lock: nobody uses it)
            _install(folder, normalised, policy)
            return folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(folder: Path, normalised: list[str], policy: EnvPolicy) -> None:
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.monotonic()
    try:
        pending = [Requirement(t) for t in normalised]
        installed: dict[str, str] = {}
        for _ in range(_MAX_ROUNDS):
            _pip(tmp, [str(r) for r in pending], policy)
            installed = {canonicalize_name(d.metadata["Name"]): d.version
                         for d in metadata.distributions(path=[str(tmp)])}
            pending = list(_missing(tmp, installed, normalised))
            if not pending:
                break
            outside = sorted({canonicalize_name(r.name) for r in pending} - policy.allowed)
            if policy.mode == "allow-list" and outside:
                raise errors.ProcessParameterInvalid(
                    f"The packages the UDF declares ({', '.join(normalised)}) require "
                    f"{', '.join(outside)}, which this server does not install for UDFs: its "
                    f"administrator allows only these packages: "
                    f"{', '.join(sorted(policy.allowed))} (GET /udf_runtimes).", argument="udf")
        else:
            raise errors.ProcessParameterInvalid(
                f"The packages the UDF declares ({', '.join(normalised)}) need more rounds of "
                f"dependencies than this server installs.", argument="udf")
        seconds = time.monotonic() - started
        (tmp / MANIFEST).write_text(json.dumps(
            {"requirements": normalised, "installed": installed,
             "seconds": round(seconds, 2), "created": time.time()}, indent=1))
        _readable(tmp)
        os.rename(tmp, folder)
        log.info("UDF environment %s installed in %.1f s: %s", folder.name, seconds,
                 ", ".join(f"{k} {v}" for k, v in sorted(installed.items())))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _readable(top: Path) -> None:
    """Readable by everyone: as root, the runner drops to a uid of its own (udf_runner.py),
    and a server umask of 077 would hide the packages from it."""
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        extra = 0o555 if path.is_dir() or mode & 0o100 else 0o444
        path.chmod(mode | extra)


def _missing(tmp: Path, installed: dict[str, str],
             normalised: list[str]) -> Iterator[Requirement]:
    """Requirements of the installed packages that neither the runtime nor the environment
    satisfy (a conflict with the runtime or the environment is an error)."""
    extras_of: dict[str, set[str]] = {}
    for text in normalised:
        req = Requirement(text)
        extras_of.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    seen = set()
    for dist in metadata.distributions(path=[str(tmp)]):
        owner = canonicalize_name(dist.metadata["Name"])
        for text in dist.requires or []:
            req = Requirement(text)
            if not _applies(req, extras_of.get(owner, set())):
                continue
            name = canonicalize_name(req.name)
            have = _runtime_version(req.name) or installed.get(name)
            if have is None:
                if name not in seen:
                    seen.add(name)
                    yield req
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                raise errors.ProcessParameterInvalid(
                    f"The package {owner} the UDF needs requires {_conflict(req, have)}: "
                    f"installed packages add to the runtime, they never replace its "
                    f"libraries.", argument="udf")


def _pip(target: Path, requirements: list[str], policy: EnvPolicy) -> None:
    command = [sys.executable, "-m", "pip", "install", "--target", str(target), "--no-deps",
               "--only-binary", ":all:", "--upgrade", "--no-input",
               "--disable-pip-version-check", "--no-cache-dir", "--retries", "1",
               "--timeout", "15", "--quiet"]
    if policy.index == "none":
        command.append("--no-index")
    elif policy.index:
        command += ["--index-url", policy.index]
    for link in policy.find_links:
        command += ["--find-links", link]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRACUBE_")}
    try:
        done = subprocess.run([*command, *requirements], capture_output=True, text=True,
                              timeout=policy.timeout_seconds, env=env, cwd=target,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise errors.ProcessParameterInvalid(
            f"Installing the packages the UDF declares ({', '.join(requirements)}) took longer "
            f"than this server's limit of {policy.timeout_seconds:g} s.", argument="udf") from None
    if done.returncode != 0:
        raise errors.ProcessParameterInvalid(
            f"The packages the UDF declares could not be installed "
            f"({', '.join(requirements)}): {pip_reason(done.stderr, policy)}", argument="udf")


_OFFLINE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
            "Name or service not known", "Connection refused", "ConnectTimeoutError")


def pip_reason(stderr: str, policy: EnvPolicy) -> str:
    """pip's own one-line reason (its last ERROR line), and whether the index was unreachable."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors_ = [ln.removeprefix("ERROR:").strip() for ln in lines if ln.startswith("ERROR:")]
    reason = errors_[-1] if errors_ else (lines[-1] if lines else "pip failed")
    if any(word in stderr for word in _OFFLINE):
        index = policy.index if policy.index not in ("", "none") else "its package index"
        return f"the server cannot reach {index} (it may be offline): {reason[:300]}."
    return reason[:500].rstrip(".") + "."


def udf_codes(graph: Any) -> Iterator[tuple[str, str]]:
    """(node id, code) of every run_udf node with inline code in a process graph, callbacks
    included: start_job installs their environments before the job is queued."""
    if isinstance(graph, dict) and "process_graph" in graph and isinstance(
            graph["process_graph"], dict):
        graph = graph["process_graph"]
    if not isinstance(graph, dict):
        return
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        args = node.get("arguments")
        if node.get("process_id") == "run_udf" and isinstance(args, dict) \
                and isinstance(args.get("udf"), str):
            yield str(node_id), args["udf"]
        for value in (args or {}).values() if isinstance(args, dict) else ():
            if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
                yield from udf_codes(value["process_graph"])


def prepare_graph(graph: Any, settings: Any) -> None:
    """Install (or find cached) the environments of every UDF of a process graph: a batch job
    whose UDF declares a package that is refused or cannot be installed fails here, when it is
    started, not after it was queued. ProcessParameterInvalid names the node."""
    if settings is None or not settings.udf_enabled:
        return
    policy = EnvPolicy.from_settings(settings)
    for node_id, code in udf_codes(graph):
        try:
            environment_for(code, policy)
        except errors.OpenEOError as exc:
            raise exc.at(node_id, "udf") from None
