"""Accounts of OpenID Connect sign-ins (auth/oidc.py OidcAccounts.user_for) on a real
database: who gets which user id, and that the same person always lands in the same account.
The token checks themselves run against a real provider in test_oidc_provider.py."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from terracube.auth.oidc import OidcAccounts, OidcVerifier
from terracube.auth.users import UserStore
from terracube.db import open_database
from terracube.settings import OidcProviderSettings

UNI = OidcProviderSettings(id="uni", issuer="https://login.uni.example/realms/t", title="Uni")
CDSE = OidcProviderSettings(id="CDSE", issuer="https://identity.example.eu/realms/CDSE",
                            title="CDSE")


@pytest.fixture
def setup(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'terracube.db'}")
    users = UserStore(db)
    users.add("ann", "secret")  # a basic account
    accounts = OidcAccounts(db, OidcVerifier([UNI, CDSE]))
    yield db, users, accounts
    accounts.verifier.close()
    db.dispose()


def test_user_ids_come_from_the_claims_and_never_take_an_account_over(setup):
    _db, users, accounts = setup
    bea = accounts.user_for(UNI, {"sub": "0001", "preferred_username": "bea",
                                  "name": "Bea B.", "email": "bea@uni.example"})
    assert bea.user_id == "bea"
    ann = accounts.user_for(UNI, {"sub": "0002", "preferred_username": "ann"})
    assert ann.user_id == "ann-2"  # "ann" is a basic account
    assert not users.has_password("ann-2", "")
    # CDSE's preferred_username is an e-mail address: the part before @, made valid
    mail = accounts.user_for(CDSE, {"sub": "c-1", "preferred_username": "bea@web.example"})
    assert mail.user_id == "bea-2"
    weird = accounts.user_for(CDSE, {"sub": "c-2", "preferred_username": "Zoë O'Neil"})
    assert weird.user_id == "Zo__O_Neil"
    bare = accounts.user_for(CDSE, {"sub": "0f9e8d7c-uuid"})
    assert bare.user_id == "0f9e8d7c-uuid"


def test_the_same_person_is_the_same_account_whatever_the_claims_say(setup):
    _db, _users, accounts = setup
    first = accounts.user_for(UNI, {"sub": "42", "preferred_username": "cem", "name": "Cem"})
    renamed = accounts.user_for(UNI, {"sub": "42", "preferred_username": "cem.k",
                                      "name": "Cem K."})
    assert renamed.user_id == first.user_id == "cem"
    assert accounts.identity_of("cem").name == "Cem K."
    # the same subject at another issuer is another person
    assert accounts.user_for(CDSE, {"sub": "42", "preferred_username": "cem"}).user_id == "cem-2"


def test_a_removed_account_starts_anew(setup):
    _db, users, accounts = setup
    accounts.user_for(UNI, {"sub": "7", "preferred_username": "dan"})
    users.remove("dan")
    assert accounts.identity_of("dan") is None
    assert accounts.user_for(UNI, {"sub": "7", "preferred_username": "dan"}).user_id == "dan"


def test_concurrent_first_sign_ins_make_one_account(setup):
    _db, users, accounts = setup
    claims = {"sub": "99", "preferred_username": "eve"}
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: accounts.user_for(UNI, claims).user_id, range(16)))
    assert ids == {"eve"}
    assert [u.user_id for u in users.list()].count("eve") == 1
    assert not any(u.user_id.startswith("eve-") for u in users.list())


def test_users_list_names_the_provider(setup, tmp_path):
    _db, _users, accounts = setup
    accounts.user_for(UNI, {"sub": "1", "preferred_username": "fay", "name": "Fay F."})
    out = subprocess.run([sys.executable, "-m", "terracube.cli", "users", "list",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert "ann" in out
    assert "fay\tOpenID Connect 'uni': Fay F." in out
