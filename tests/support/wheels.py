"""Tiny pure-Python wheels written in a test (no network, no build backend): the package index
of a server whose UDFs declare dependencies (`--no-index --find-links FOLDER`)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str],
                requires: Iterable[str] = ()) -> Path:
    """A `py3-none-any` wheel of `name` with `files` (path in the wheel -> source text) and
    Requires-Dist lines `requires`, written into `folder`."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    entries = {**files, f"{dist}.dist-info/METADATA": meta,
               f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: terracube-tests\n"
                                          "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in entries.items():
            data = text.encode()
            wheel.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        wheel.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path
