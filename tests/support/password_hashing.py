"""Cheap argon2 parameters for the accounts the test process itself creates.

The default `PasswordHasher` (RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes) costs
0.3-0.8 s per hash or login on the loaded 2-core test machine, on purpose. A `create_app`
in a test hashes three times (a dummy and two users) and each basic login verifies once:
seconds per test, hundreds of tests. In the test process, accounts are hashed and verified
with the same argon2id code at the smallest cost (as tests/jobs/conftest.py already did for
its stores); `terracube serve` and CLI child processes keep the real parameters, and
tests/auth/test_users.py still sees argon2id hashes.
"""

from __future__ import annotations

from typing import Any

import argon2

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


class CheapPasswordHasher(argon2.PasswordHasher):
    """argon2.PasswordHasher with CHEAP as its defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args:
            kwargs = {**CHEAP, **kwargs}
        super().__init__(*args, **kwargs)


def install() -> None:
    """Make the user store of this process hash with CheapPasswordHasher by default."""
    from terracube.auth import users

    users.PasswordHasher = CheapPasswordHasher  # type: ignore[misc]
