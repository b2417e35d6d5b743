"""Starting a user's JupyterLab: home under the data directory, samples/, mystorage/, a token.

A local process per user (JupyterHub's SimpleLocalProcessSpawner: no system accounts are
created, every lab runs as the hub's own system user — fine for one trusted machine, see
docs/administration/hub.md for container spawners that isolate users). Before each start:

- the home is `<data_dir>/hub/home/<user>`;
- `samples/` is re-created from the training package (changed samples kept beside, renamed);
- `mystorage` is a link to the user's terracube workspace, the folder GET /files serves;
- a new terracube token is issued with the TokenStore (the one /credentials/basic uses) and
  given to the lab as TERRACUBE_TOKEN, with TERRACUBE_URL; while the lab runs, a fresh token
  is written to TERRACUBE_TOKEN_FILE every quarter of the token lifetime (the lab's
  `terracube.hub.lab` extension hands it to new kernels). The tokens a lab got are revoked
  when it stops.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado.ioloop import PeriodicCallback
from traitlets import default

from terracube.hub.accounts import hub_accounts
from terracube.hub.samples import sync_samples
from terracube.workspace.files import folder_name, workspace_folder
from terracube.workspace.retention import record_activity

STORAGE_LINK = "mystorage"
SAMPLES_FOLDER = "samples"
TOKEN_FILE = Path(".terracube") / "token"
NEWS_SETTINGS = (Path(".jupyter") / "lab" / "user-settings" / "@jupyterlab"
                 / "apputils-extension" / "notification.jupyterlab-settings")


class TerracubeSpawner(SimpleLocalProcessSpawner):
    """A JupyterLab process per user with samples/, mystorage/ and a terracube token."""

    @default("home_dir")
    def _default_home_dir(self) -> str:
        return str(hub_accounts().settings.homes_dir / folder_name(self.user.name))

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # The hub's own Python: the lab gets the same packages (openeo, xarray, ...).
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @default("default_url")
    def _default_url(self) -> str:
        return f"/lab/tree/{SAMPLES_FOLDER}"

    @default("args")
    def _default_args(self) -> list[str]:
        args = ["--ServerApp.contents_manager_class="
                "terracube.hub.contents.QuotaContentsManager",
                "--ServerApp.jpserver_extensions=terracube.hub.lab=True",
                # A course lab works offline: no news feed, no update check, no prompt for them.
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:  # labs run as the hub's user; in containers and CI that is root
            args.append("--allow-root")
        return args

    # --- start / stop ---------------------------------------------------------------------
    async def start(self) -> Any:
        await asyncio.to_thread(self._prepare_home)
        self._start_renewal()
        try:
            return await super().start()
        except BaseException:
            await self._stop_renewal()
            raise

    async def stop(self, now: bool = False) -> None:
        await self._stop_renewal()
        await super().stop(now=now)

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is not None:
            return status
        accounts = hub_accounts()
        if (not getattr(self, "_stopping_removed", False)
                and not await asyncio.to_thread(accounts.users.exists, self.user.name)):
            # `terracube users remove` ran: the lab must not outlive the account. (stop()
            # polls too: the flag keeps it from coming back here.)
            self.log.warning("terracube: %s was removed; stopping the lab", self.user.name)
            self._stopping_removed = True
            try:
                await self.stop(now=True)
            finally:
                self._stopping_removed = False
            return 0
        if getattr(self, "_renewal", None) is None:  # a lab that outlived a hub restart
            self._start_renewal()
        return None

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        accounts = hub_accounts()
        settings = accounts.settings
        env.update({
            "TERRACUBE_URL": settings.public_base(),
            "TERRACUBE_USER": self.user.name,
            "TERRACUBE_TOKEN": self._current_token or "",
            "TERRACUBE_TOKEN_FILE": str(Path(self.home_dir) / TOKEN_FILE),
            "TERRACUBE_STORAGE_QUOTA_BYTES": str(settings.storage_quota_bytes),
        })
        return env

    # --- the home -------------------------------------------------------------------------
    def _prepare_home(self) -> None:
        settings = hub_accounts().settings
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        report = sync_samples(settings.samples_source(), home, SAMPLES_FOLDER)
        for original, kept in report.kept_changed.items():
            self.log.info("terracube: %s changed samples/%s; kept as samples/%s",
                          self.user.name, original, kept)
        # First start: JupyterLab's news prompt off (a course lab works offline); the
        # student may turn it on again in the settings, which this does not overwrite.
        news = home / NEWS_SETTINGS
        if not news.exists():
            news.parent.mkdir(parents=True, exist_ok=True)
            news.write_text('{"fetchNews": "false", "checkForUpdates": false}\n')
        workspace = workspace_folder(settings, self.user.name)
        workspace.mkdir(parents=True, exist_ok=True)
        link = home / STORAGE_LINK
        if link.is_symlink() and Path(os.readlink(link)) != workspace:
            link.unlink()
        if not link.is_symlink():
            if link.exists():  # a real folder of that name: keep it, out of the way
                link.rename(home / f"{STORAGE_LINK}.old")
            link.symlink_to(workspace, target_is_directory=True)
        self._issue_token()

    # --- the terracube token --------------------------------------------------------------
    _current_token: str | None = None

    def _issue_token(self) -> None:
        """A new token for the user, written to the token file (only the user reads it)."""
        accounts = hub_accounts()
        token = accounts.tokens.issue(self.user.name)
        # Working in the lab is activity: it keeps mystorage/ from the retention sweep (the
        # tokens themselves are revoked when the lab stops, so they cannot be the record).
        record_activity(accounts.db, self.user.name)
        path = Path(self.home_dir) / TOKEN_FILE
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
        self._current_token = token
        # Older tokens have expired by now; only the recent ones need revoking at the stop.
        self._issued: list[str] = [*getattr(self, "_issued", []), token][-8:]

    def _start_renewal(self) -> None:
        interval = hub_accounts().settings.token_renew_seconds()
        self._renewal = PeriodicCallback(self._renew, interval * 1000)
        self._renewal.start()

    async def _renew(self) -> None:
        try:
            await asyncio.to_thread(self._issue_token)
        except Exception:  # the next round tries again; the current token is still valid
            self.log.exception("terracube: renewing the token of %s failed", self.user.name)

    async def _stop_renewal(self) -> None:
        renewal = getattr(self, "_renewal", None)
        if renewal is not None:
            renewal.stop()
            self._renewal = None
        issued, self._issued = list(getattr(self, "_issued", [])), []
        tokens = hub_accounts().tokens
        for token in issued:
            await asyncio.to_thread(tokens.revoke, token)
        (Path(self.home_dir) / TOKEN_FILE).unlink(missing_ok=True)
