"""Processes from a URL namespace (the API's remote-process-definition extension): a node whose
`namespace` is an http(s) URL runs the process that URL serves — one process (as GET
/process_graphs/{id} answers, e.g. the `canonical` URL of a public user-defined process) or a
list of them (as GET /process_graphs answers), where the node's `process_id` picks one."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from terracube import errors
from terracube.udp.definition import check_definition

_TIMEOUT_S = 20
_MAX_BYTES = 8 * 2**20


def is_url_namespace(namespace: str | None) -> bool:
    return isinstance(namespace, str) and bool(re.match(r"^https?://", namespace, re.I))


def remote_process(url: str, process_id: str) -> dict[str, Any]:
    """The process `process_id` that `url` serves, checked like a stored one;
    ProcessNamespaceInvalid (naming the URL and the reason) if there is none."""

    def invalid(reason: str) -> errors.OpenEOError:
        return errors.ProcessNamespaceInvalid(
            f"The value passed for namespace '{url}' in process '{process_id}' is invalid: "
            f"{reason}")

    # No Authorization header is sent: the extension forbids passing openEO credentials on.
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            body = response.read(_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise invalid(f"the URL answered HTTP {exc.code} (a process must be public to be "
                      "used by its URL: store it with \"public\": true).") from None
    except (OSError, ValueError) as exc:
        raise invalid(f"it could not be read ({exc}).") from None
    if len(body) > _MAX_BYTES:
        raise invalid(f"it is larger than {_MAX_BYTES // 2**20} MB.")
    try:
        document = json.loads(body)
    except ValueError:
        raise invalid("it does not serve JSON.") from None
    if isinstance(document, dict) and isinstance(document.get("processes"), list):
        found = [p for p in document["processes"]
                 if isinstance(p, dict) and p.get("id") == process_id]
        if not found:
            raise invalid(f"its list of processes has no process '{process_id}'.")
        document = found[0]
    if not isinstance(document, dict) or "process_graph" not in document:
        raise invalid("it serves no process with a process graph.")
    if document.get("id") != process_id:
        raise invalid(f"it serves the process '{document.get('id')}', not '{process_id}'.")
    try:
        return check_definition(process_id, document)
    except errors.OpenEOError as exc:
        raise invalid(f"its process is not valid: {exc.message}") from None
