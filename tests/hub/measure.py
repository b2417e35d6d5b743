"""Measure the course hub and photograph a lab (docs/administration/hub.md, docs/images/).

    python -m tests.hub.measure [--screenshot docs/images/hub-lab.png] [--data-dir DIR]

Starts `terracube hub` on a temporary data folder (or DIR) with one user, signs in through the
login form, opens the lab and starts a kernel, and prints: the time from sign-in to a running
kernel, the memory (RSS) of the hub's processes with one idle lab. With --screenshot, Debian's
headless Chromium opens the signed-in lab with a sample notebook (cookies handed over through
the DevTools protocol) and saves a PNG.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from tests.hub.conftest import HubProcess, HubUser, add_users
from tests.support.paths import REPO
from tests.support.processes import free_port

USER, PASSWORD = "student", "course-2026"


def process_memory(hub: HubProcess) -> dict[str, float]:
    """RSS in MB of the hub's processes by role."""
    roles: dict[str, float] = {}
    root = psutil.Process(hub.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            cmd = " ".join(proc.cmdline())
            rss = proc.memory_info().rss / 1e6
        except psutil.NoSuchProcess:
            continue
        if "configurable-http-proxy" in cmd:
            role = "proxy (node)"
        elif "jupyterhub.singleuser" in cmd:
            role = "lab (jupyter server)"
        elif "ipykernel" in cmd:
            role = "kernel (idle)"
        elif "idle_culler" in cmd:
            role = "idle culler"
        elif "terracube.cli serve" in cmd or "terracube.cli worker" in cmd:
            role = "terracube API"
        elif proc.pid == hub.pid:
            role = "JupyterHub"
        else:
            role = "other: " + cmd[:60]
        roles[role] = roles.get(role, 0.0) + rss
    return roles


def screenshot(user: HubUser, url: str, out: Path, size: tuple[int, int] = (1400, 860),
               wait: float = 12.0) -> None:
    """Open `url` in headless Chromium with the user's cookies and save a PNG."""
    from websockets.sync.client import connect

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found (Debian: apt-get install chromium)")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="terracube-chromium-")
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                             f"--window-size={size[0]},{size[1]}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json").json()
                page = next(t for t in targets if t["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            counter = iter(range(1, 10**6))

            def call(method: str, **params: object) -> dict:
                msg_id = next(counter)
                ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv(timeout=60))
                    if msg.get("id") == msg_id:
                        return msg.get("result", {})

            call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                 deviceScaleFactor=1, mobile=False)
            for cookie in user.http.cookies.jar:
                call("Network.setCookie", name=cookie.name, value=cookie.value,
                     domain="127.0.0.1", path=cookie.path)
            call("Page.navigate", url=url)
            time.sleep(wait)  # JupyterLab draws itself with JavaScript after the load event
            shot = call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--notebook", default="01_python_matplotlib.ipynb",
                        help="sample notebook to open for the screenshot")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="terracube-hub-measure-"))
    add_users(data_dir, {USER: PASSWORD})
    hub = HubProcess(data_dir, REPO / "notebooks", TERRACUBE_HUB_IDLE_TIMEOUT_SECONDS="0")
    try:
        user = HubUser(hub, USER)
        start = time.monotonic()
        assert user.sign_in(PASSWORD).status_code == 200
        user.open_lab()
        kernel = user.start_kernel()
        assert user.execute(kernel, "print(1)").strip() == "1"
        elapsed = time.monotonic() - start
        time.sleep(10)  # let the lab and the kernel settle to idle
        memory = process_memory(hub)
        report = {"sign-in to running kernel (s)": round(elapsed, 1),
                  "memory RSS (MB)": {k: round(v) for k, v in sorted(memory.items())},
                  "hub + proxy + culler + one idle lab with its kernel (MB)": round(sum(
                      v for k, v in memory.items() if k != "terracube API"))}
        print(json.dumps(report, indent=1))
        if args.screenshot:
            url = f"{hub.url}/user/{USER}/lab/tree/samples/{args.notebook}"
            screenshot(user, url, args.screenshot)
            print(f"screenshot: {args.screenshot}")
        user.close()
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
