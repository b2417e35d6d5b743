"""OpenID Connect sign-in: access tokens of the configured providers checked, people mapped to
terracube accounts (docs/administration/oidc.md).

openEO clients send `Authorization: Bearer oidc/<provider id>/<access token>`. A JWT access
token is verified with the provider's signing keys (JWKS, found through its
`.well-known/openid-configuration`; fetched again when a token names an unknown key id, at most
every `keys_refetch_seconds` of the provider's settings): signature, `iss`, `exp` (and `nbf`),
`aud` when the provider setting names audiences. An opaque token is asked about at the
provider's userinfo endpoint.

A person is their issuer and `sub`. The first sign-in creates an account (a row of `users`
without a password, so basic login is impossible) whose id comes from the token's claims
(preferred_username, email, sub: whichever comes first and is free); later sign-ins of the same
person land in that account, its workspace, jobs and quota, whatever the token's other claims say.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from terracube import errors
from terracube.auth.tables import OidcIdentity, User
from terracube.auth.users import USER_ID_PATTERN
from terracube.db import Database
from terracube.settings import OidcProviderSettings

# The prefix of bearer tokens of OpenID Connect providers (openapi.yaml, /credentials/oidc).
OIDC_TOKEN_PREFIX = "oidc/"

# Signatures we accept; symmetric ones (HS*) would let anyone holding the client secret
# forge tokens, and "none" is no signature at all.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
DISCOVERY_TTL_SECONDS = 3600.0
JWKS_TTL_SECONDS = 3600.0
# Answers of the userinfo endpoint are kept this long (per token) so that a client's requests
# do not each cost a round trip to the provider.
USERINFO_CACHE_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 10.0

OidcProviderUnavailable = errors.OidcProviderUnavailable


@dataclass
class _ProviderState:
    """What we fetched from one provider, and when."""

    metadata: dict[str, Any] | None = None
    metadata_at: float = 0.0
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    keys_at: float = -1e9
    lock: threading.Lock = field(default_factory=threading.Lock)


class OidcVerifier:
    """Checks access tokens of the configured providers; returns their claims."""

    def __init__(self, providers: list[OidcProviderSettings], *,
                 http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.providers = {p.id: p for p in providers}
        self._http = http or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=True)
        self._now = clock
        self._state = {p.id: _ProviderState() for p in providers}
        self._userinfo: dict[str, tuple[float, dict[str, Any]]] = {}
        self._userinfo_lock = threading.Lock()

    def provider(self, provider_id: str) -> OidcProviderSettings:
        provider = self.providers.get(provider_id)
        if provider is None:
            known = ", ".join(f"'{p}'" for p in self.providers)
            raise errors.TokenInvalid(
                f"Unknown OpenID Connect provider '{provider_id}' in the bearer token; this "
                f"back-end knows {known} (GET /credentials/oidc).")
        return provider

    def verify(self, provider_id: str, token: str) -> dict[str, Any]:
        """The claims of a valid access token (with `sub`); TokenInvalid otherwise."""
        provider = self.provider(provider_id)
        if not token:
            raise errors.TokenInvalid("The bearer token has no access token after "
                                      f"'oidc/{provider_id}/'.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            header = None
        if header is None:
            claims = self._userinfo_claims(provider, token)
        else:
            claims = self._jwt_claims(provider, token, header)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' names no subject ('sub').")
        return claims

    # --- JWT access tokens ----------------------------------------------------------------------
    def _jwt_claims(self, provider: OidcProviderSettings, token: str,
                    header: dict[str, Any]) -> dict[str, Any]:
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise errors.TokenInvalid(
                f"The access token is signed with {alg!r}; provider '{provider.id}' tokens must "
                "carry an asymmetric signature (RS*, PS*, ES*, EdDSA).")
        key = self._signing_key(provider, header.get("kid"))
        try:
            return jwt.decode(
                token, key.key, algorithms=[alg], issuer=provider.issuer,
                audience=provider.audience or None,
                leeway=provider.clock_skew_seconds,
                options={"require": ["exp", "iss"], "verify_aud": bool(provider.audience)})
        except jwt.ExpiredSignatureError:
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' has expired; refresh it or sign "
                "in again.") from None
        except jwt.InvalidIssuerError:
            raise errors.TokenInvalid(
                f"The access token was not issued by provider '{provider.id}' "
                f"({provider.issuer}).") from None
        except jwt.InvalidAudienceError:
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' is not meant for this back-end "
                f"(its audience is not one of {provider.audience}).") from None
        except jwt.InvalidTokenError as e:
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' is invalid ({e}).") from None

    def _signing_key(self, provider: OidcProviderSettings, kid: Any) -> jwt.PyJWK:
        state = self._state[provider.id]
        with state.lock:
            now = self._now()
            stale = now - state.keys_at > JWKS_TTL_SECONDS
            unknown = _find_key(state.keys, kid) is None
            if stale or (unknown and now - state.keys_at > provider.keys_refetch_seconds):
                state.keys = self._fetch_keys(provider)
                state.keys_at = now
            key = _find_key(state.keys, kid)
        if key is None:
            raise errors.TokenInvalid(
                f"The access token is not signed by a key of provider '{provider.id}' "
                f"(key id {kid!r}): it comes from another issuer or was tampered with.")
        return key

    def _fetch_keys(self, provider: OidcProviderSettings) -> dict[str, jwt.PyJWK]:
        uri = self.metadata(provider).get("jwks_uri")
        if not isinstance(uri, str):
            raise OidcProviderUnavailable(
                f"Provider '{provider.id}' publishes no jwks_uri: its JWT access tokens cannot "
                "be checked.")
        document = self._get_json(provider, uri)
        keys: dict[str, jwt.PyJWK] = {}
        for i, item in enumerate(document.get("keys") or []):
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(item)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type we cannot use; others may still work
            keys[str(item.get("kid", f"#{i}"))] = key
        return keys

    # --- opaque access tokens -------------------------------------------------------------------
    def _userinfo_claims(self, provider: OidcProviderSettings, token: str) -> dict[str, Any]:
        if not provider.userinfo:
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' is not a JWT, and this back-end "
                "only accepts JWT access tokens of it.")
        digest = hashlib.sha256(f"{provider.id}\0{token}".encode()).hexdigest()
        now = self._now()
        with self._userinfo_lock:
            cached = self._userinfo.get(digest)
            if cached is not None and now - cached[0] < USERINFO_CACHE_SECONDS:
                return cached[1]
        uri = self.metadata(provider).get("userinfo_endpoint")
        if not isinstance(uri, str):
            raise errors.TokenInvalid(
                f"The access token of provider '{provider.id}' is not a JWT and the provider "
                "has no userinfo endpoint to check it.")
        try:
            response = self._http.get(uri, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as e:
            raise OidcProviderUnavailable(
                f"Provider '{provider.id}' did not answer at its userinfo endpoint "
                f"({type(e).__name__}); try again later.") from None
        if response.status_code in (400, 401, 403):
            raise errors.TokenInvalid(
                f"Provider '{provider.id}' does not accept the access token (expired, revoked "
                "or not its own); refresh it or sign in again.")
        claims = _json_object(provider, response)
        with self._userinfo_lock:
            # Drop what has run out, so the cache holds at most USERINFO_CACHE_SECONDS of tokens.
            for key in [k for k, (at, _) in self._userinfo.items()
                        if now - at >= USERINFO_CACHE_SECONDS]:
                del self._userinfo[key]
            self._userinfo[digest] = (now, claims)
        return claims

    # --- discovery ------------------------------------------------------------------------------
    def metadata(self, provider: OidcProviderSettings) -> dict[str, Any]:
        """The provider's OpenID configuration (cached for DISCOVERY_TTL_SECONDS)."""
        state = self._state[provider.id]
        now = self._now()
        if state.metadata is None or now - state.metadata_at > DISCOVERY_TTL_SECONDS:
            document = self._get_json(
                provider, f"{provider.issuer}/.well-known/openid-configuration")
            if str(document.get("issuer", "")).rstrip("/") != provider.issuer:
                raise OidcProviderUnavailable(
                    f"Provider '{provider.id}' announces the issuer "
                    f"{document.get('issuer')!r}, not the configured {provider.issuer!r}.")
            state.metadata, state.metadata_at = document, now
        return state.metadata

    def _get_json(self, provider: OidcProviderSettings, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as e:
            raise OidcProviderUnavailable(
                f"Provider '{provider.id}' did not answer ({type(e).__name__} at {url}); "
                "try again later.") from None
        if response.status_code != 200:
            raise OidcProviderUnavailable(
                f"Provider '{provider.id}' answered {response.status_code} at {url}; try "
                "again later.")
        return _json_object(provider, response)

    def close(self) -> None:
        self._http.close()


def _find_key(keys: dict[str, jwt.PyJWK], kid: Any) -> jwt.PyJWK | None:
    if kid is None:
        # Without a key id the token can only be checked if the provider has one key.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(str(kid))


def _json_object(provider: OidcProviderSettings, response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise OidcProviderUnavailable(
            f"Provider '{provider.id}' answered something that is not a JSON object at "
            f"{response.request.url}.")
    return document


# --- accounts -------------------------------------------------------------------------------------
class OidcAccounts:
    """The terracube account of each person signing in with OpenID Connect."""

    def __init__(self, db: Database, verifier: OidcVerifier) -> None:
        self.db = db
        self.verifier = verifier

    def resolve(self, credentials: str) -> User:
        """The user of `<provider id>/<access token>` (the bearer token without 'oidc/'),
        created on first sign-in."""
        provider_id, sep, token = credentials.partition("/")
        if not sep:
            raise errors.TokenInvalid(
                "An OpenID Connect bearer token reads 'oidc/<provider id>/<access token>'.")
        claims = self.verifier.verify(provider_id, token)
        provider = self.verifier.provider(provider_id)
        return self.user_for(provider, claims)

    def user_for(self, provider: OidcProviderSettings, claims: dict[str, Any]) -> User:
        """The account of the person the claims describe (issuer + sub), created if new."""
        subject = str(claims["sub"])
        name = _claim_text(claims.get("name"))
        email = _claim_text(claims.get("email"))
        for _attempt in range(5):
            with self.db.session() as s:
                identity = s.get(OidcIdentity, (provider.issuer, subject))
                user = s.get(User, identity.user_id) if identity is not None else None
                if identity is not None and user is not None:
                    if (name and name != identity.name) or (email and email != identity.email):
                        identity.name = name or identity.name
                        identity.email = email or identity.email
                    return user
                if identity is not None:  # the account was removed: the person starts anew
                    s.delete(identity)
            try:
                return self._create(provider, subject, claims, name, email)
            except IntegrityError:
                continue  # a concurrent first sign-in of the same person, or the id was taken
        raise errors.Internal("Could not create an account for this OpenID Connect sign-in.")

    def _create(self, provider: OidcProviderSettings, subject: str, claims: dict[str, Any],
                name: str | None, email: str | None) -> User:
        now = datetime.now(UTC)
        with self.db.session() as s:
            taken = set(s.scalars(select(User.user_id).where(
                User.user_id.in_(_candidates(provider, claims, subject)))))
            user_id = next(c for c in _candidates(provider, claims, subject) if c not in taken)
            # No password hash: basic login is impossible for this account (argon2 refuses "").
            user = User(user_id=user_id, password_hash="", created=now)
            s.add(user)
            s.flush()
            s.add(OidcIdentity(issuer=provider.issuer, subject=subject, user_id=user_id,
                               provider_id=provider.id, name=name, email=email, created=now))
        return user

    def identity_of(self, user_id: str) -> OidcIdentity | None:
        """The OpenID Connect identity of an account (None for basic-only accounts)."""
        with self.db.session() as s:
            return s.scalars(select(OidcIdentity).where(OidcIdentity.user_id == user_id)
                             .limit(1)).first()


def oidc_identities(db: Database) -> dict[str, OidcIdentity]:
    """The OpenID Connect identity of every account that has one, by user id."""
    with db.session() as s:
        return {i.user_id: i for i in s.scalars(select(OidcIdentity))}


def _claim_text(value: Any) -> str | None:
    return value.strip()[:255] or None if isinstance(value, str) else None


_NOT_IN_USER_ID = re.compile(r"[^\w\-.~]", re.ASCII)


def _candidates(provider: OidcProviderSettings, claims: dict[str, Any],
                subject: str) -> list[str]:
    """User ids for a new account, best first: the configured claims made into valid ids
    (names before the subject, often a UUID), the first name with -2, -3, …, then one made
    from issuer and subject (an existing account is never taken over)."""
    names: list[str] = []
    subjects: list[str] = []
    for claim in provider.user_id_claims:
        value = claims.get(claim)
        if not isinstance(value, str) or not value.strip():
            continue
        if claim == "email" or (claim == "preferred_username" and "@" in value):
            value = value.split("@", 1)[0]
        base = _NOT_IN_USER_ID.sub("_", value.strip())[:56].strip("._")
        if base and USER_ID_PATTERN.match(base) and base not in names + subjects:
            (subjects if claim == "sub" else names).append(base)
    numbered = [f"{names[0]}-{n}" for n in range(2, 100)] if names else []
    digest = hashlib.sha256(f"{provider.issuer}\0{subject}".encode()).hexdigest()
    return names + numbered + subjects + [f"oidc-{digest[:16]}", f"oidc-{digest[:40]}"]
