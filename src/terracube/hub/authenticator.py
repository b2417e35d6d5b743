"""Signing in to the hub with a terracube account: the same user store, the same argon2 hashes.

There is no second user list: JupyterHub's own user table only mirrors who has signed in.
A user removed with `terracube users remove` cannot sign in, and an open browser session of
theirs ends at the next refresh (`auth_refresh_age`, 60 s). The admin role comes from the
account (`terracube users admin NAME`) and is re-read at every refresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import default

from terracube import errors
from terracube.auth.admins import is_admin
from terracube.hub.accounts import hub_accounts


class TerracubeAuthenticator(Authenticator):
    """Checks the login form against terracube's user store."""

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        return True  # every terracube account may use the hub; the store is the allow list

    @default("auth_refresh_age")
    def _default_refresh_age(self) -> int:
        return 60

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self) -> bool:
        return True

    @default("login_service")
    def _default_login_service(self) -> str:
        return "terracube"

    def normalize_username(self, username: str) -> str:
        # terracube user ids are case-sensitive ('Ann' and 'ann' are two accounts);
        # JupyterHub would lower-case them.
        return username.strip()

    async def authenticate(self, handler: Any, data: dict) -> dict | None:
        name = (data or {}).get("username") or ""
        password = (data or {}).get("password") or ""
        accounts = hub_accounts()
        try:
            # argon2 takes tens of milliseconds on purpose: off the hub's event loop.
            user = await asyncio.to_thread(accounts.users.authenticate, name.strip(), password)
        except errors.CredentialsInvalid:
            self.log.warning("terracube: failed sign-in for %r", name)
            return None
        admin = await asyncio.to_thread(is_admin, accounts.db, user.user_id)
        return {"name": user.user_id, "admin": admin}

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        accounts = hub_accounts()
        if not await asyncio.to_thread(accounts.users.exists, user.name):
            self.log.warning("terracube: %s has no account any more; signing out", user.name)
            return False
        return {"name": user.name, "admin": await asyncio.to_thread(is_admin, accounts.db,
                                                                     user.name)}

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        return hub_accounts().users.exists(username)
