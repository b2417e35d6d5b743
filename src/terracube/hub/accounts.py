"""The terracube accounts as the hub process sees them: settings, user store, token store."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from terracube.auth.tokens import TokenStore
from terracube.auth.users import UserStore
from terracube.db import Database, open_database
from terracube.hub.settings import HubSettings


@dataclass(frozen=True)
class HubAccounts:
    """What the authenticator and the spawner share (one per hub process)."""

    settings: HubSettings
    db: Database
    users: UserStore
    tokens: TokenStore


@functools.lru_cache(maxsize=1)
def hub_accounts() -> HubAccounts:
    """Built once from the TERRACUBE_* environment the hub was started with."""
    settings = HubSettings()
    db = open_database(settings.database_url)
    return HubAccounts(settings, db, UserStore(db), TokenStore(db, settings.token_ttl_seconds))
