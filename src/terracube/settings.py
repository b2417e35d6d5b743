"""Server settings from TERRACUBE_* environment variables: the only place that reads the env."""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UnsafeToServe(RuntimeError):
    """The settings (or the user accounts) must not be exposed beyond this machine."""


# Grant types a default client may announce (openapi.yaml, "Default OpenID Connect Clients").
GrantType = Literal["implicit", "authorization_code", "authorization_code+pkce",
                    "urn:ietf:params:oauth:grant-type:device_code",
                    "urn:ietf:params:oauth:grant-type:device_code+pkce", "refresh_token"]


class OidcDefaultClient(BaseModel):
    """A public client (no secret) of the provider that openEO clients may use as it is."""

    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1)
    grant_types: list[GrantType] = Field(min_length=1)
    redirect_urls: list[str] = Field(default_factory=list)


class OidcProviderSettings(BaseModel):
    """One OpenID Connect provider (docs/administration/oidc.md): what GET /credentials/oidc
    lists, and how access tokens of it are checked."""

    model_config = {"extra": "forbid"}

    id: str = Field(pattern=r"^[A-Za-z0-9_]{1,20}$",
                    description="Provider id of the bearer tokens 'oidc/<id>/<access token>'.")
    issuer: str = Field(description="Issuer URL (without a trailing '/'): "
                                    "<issuer>/.well-known/openid-configuration must answer.")
    title: str = Field(min_length=1)
    description: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid"])
    default_clients: list[OidcDefaultClient] = Field(default_factory=list)
    audience: list[str] = Field(
        default_factory=list,
        description="Accepted 'aud' values of JWT access tokens; empty: 'aud' is not checked.")
    userinfo: bool = Field(
        True, description="Opaque (non-JWT) access tokens are checked at the provider's "
                          "userinfo endpoint; false refuses them.")
    clock_skew_seconds: float = Field(
        10, ge=0, le=300, description="Tolerance for the token's exp/nbf/iat against our clock.")
    keys_refetch_seconds: float = Field(
        10, ge=1, le=3600, description="A JWT signed with a key id we do not know makes us fetch "
                                       "the provider's keys again (it rotated them), but not "
                                       "more often than this: random key ids must not turn us "
                                       "into a request amplifier.")
    user_id_claims: list[str] = Field(
        default_factory=lambda: ["preferred_username", "email", "sub"],
        description="Claims tried in order for the user id of a new account.")

    @field_validator("issuer")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("the issuer must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if value and "openid" not in value:
            raise ValueError("the scopes must include 'openid'")
        return value


class Settings(BaseSettings):
    """Everything configurable about a terracube server; build one and pass it explicitly."""

    model_config = SettingsConfigDict(env_prefix="TERRACUBE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    data_dir: Path = Field(
        default_factory=lambda: Path("var"),
        description="Folder for the database, sample data, job results and workspaces; "
                    "relative paths are taken from the current directory.",
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL; default: SQLite file terracube.db in data_dir.")
    database_busy_timeout_seconds: float = Field(
        30, gt=0, description="How long the server and its workers wait for the SQLite "
                              "database while another process holds it locked, before the "
                              "request (or the job's status update) fails.")
    dask_scheduler: str | None = Field(
        None, description="Address of an external Dask scheduler (tcp://host:8786); "
                          "default: a LocalCluster in the server process.")
    oidc_providers: list[OidcProviderSettings] = Field(
        default_factory=list,
        description="OpenID Connect providers as a JSON list (docs/administration/oidc.md), "
                    "the first one the default; empty: basic authentication only.")
    oidc_providers_file: Path | None = Field(
        None, description="A JSON file with the list of OpenID Connect providers (instead of "
                          "TERRACUBE_OIDC_PROVIDERS).")
    token_ttl_seconds: int = Field(
        86400, ge=0, description="Lifetime of the bearer tokens from /credentials/basic.")
    memory_limit: str | None = Field(
        None, description="Memory limit per Dask worker, e.g. '4GB'; default: Dask's choice.")
    dev_default_user: bool = Field(
        False, description="Create the user demo/demo at start-up (development only; refused "
                           "on non-loopback hosts).")
    public_url: str | None = Field(
        None, description="External URL of the host root as clients see it (behind a reverse "
                          "proxy), path prefix included, e.g. https://eo.example.org/openeo; "
                          "default: taken from requests (signed links: from the address the "
                          "server was reached at, or what a trusted proxy forwarded).")
    root_path: str = Field(
        "", description="Path prefix under which a reverse proxy publishes the server, e.g. "
                        "/openeo-proxy (the proxy strips it before forwarding); every URL the "
                        "server emits starts with it. A trusted proxy's X-Forwarded-Prefix "
                        "replaces it per request (docs/administration/proxy.md).")
    forwarded_allow_ips: str = Field(
        "", description="Comma-separated addresses or networks (CIDR) of reverse proxies "
                        "whose X-Forwarded-For/-Proto/-Host/-Prefix headers are honoured, e.g. "
                        "127.0.0.1 or 10.0.0.0/8; '*' trusts every peer; default: none (the "
                        "headers are ignored).")
    # Batch jobs (docs/user-guide/batch-jobs.md)
    workers: int = Field(
        2, ge=0, description="Number of `terracube worker` processes `terracube serve` starts "
                             "for batch jobs; 0: none (run `terracube worker` yourself).")
    job_retention_days: float = Field(
        30, ge=0, description="Days the results of a finished (or failed) batch job are kept "
                              "before they are removed with their files; 0: keep forever.")
    signed_url_ttl_seconds: int = Field(
        7 * 86400, ge=1, description="Lifetime of the signed download links of job results.")
    secret_key: str | None = Field(
        None, description="Key that signs the result download links; default: a random key "
                          "generated once into data_dir/secret.key.")
    job_heartbeat_timeout_seconds: float = Field(
        60, gt=0, description="A running job whose worker has not reported for this long (or "
                              "whose worker process on this host is gone) is re-queued once, "
                              "then marked as failed.")
    job_max_seconds: float = Field(
        86400, gt=0, description="Longest a batch job may run (wall-clock seconds of one run); "
                                 "a job still running then is stopped and ends as error, "
                                 "saying so in its log. A job may set a lower limit with its "
                                 "job option max-seconds.")
    max_running_jobs_per_user: int = Field(
        2, ge=1, description="Batch jobs of one user that run at the same time; the user's "
                             "further jobs wait while the workers take other users' jobs "
                             "(jobs are taken round-robin across users).")
    max_queued_jobs_per_user: int = Field(
        50, ge=1, description="Batch jobs one user may have queued (waiting, not running); "
                              "starting one more is refused with 429 TooManyRequests and a "
                              "Retry-After header.")
    max_sync_requests_per_user: int = Field(
        2, ge=1, description="Synchronous requests (POST /result) one user may have running "
                             "at the same time in one server process; one more is refused "
                             "with 429 TooManyRequests and a Retry-After header.")
    storage_quota_bytes: int = Field(
        10 * 1024**3, ge=0, description="Storage quota of each user's workspace (/files) in "
                                        "bytes; default 10 GiB.")
    upload_idle_timeout_seconds: float = Field(
        30, gt=0, description="An upload (PUT /files/...) that sends no bytes for this long is "
                              "ended with 408 RequestTimeout; its quota reservation (the "
                              "announced size) is released.")
    workspace_inactive_days: int = Field(
        15, ge=0, description="Workspaces of users who have not logged in for this many days "
                              "are flagged for removal by 'terracube workspaces sweep'; 0 "
                              "turns the retention off.")
    workspace_warning_days: int = Field(
        7, ge=0, description="Days between flagging an inactive workspace and removing its "
                             "files (the user logging in again in between keeps them).")

    # Billing (docs/administration/billing.md): a "cost" is CPU-seconds times the rate.
    billing_currency: str = Field(
        "credits", min_length=1, description="The unit costs and budgets are given in (GET / "
                                             "billing.currency): an ISO 4217 code or a unit "
                                             "of this server such as 'credits'.")
    billing_rate: float = Field(
        0.0, ge=0, description="Costs per CPU-second of processing, in billing_currency; 0 "
                               "(default): everything is free and the one plan is 'free'.")

    fetch_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts, addresses or networks (CIDR) beyond the public internet, and "
                    "folders (absolute paths) of local files, that load_stac and "
                    "load_ml_model may read for users, e.g. [\"10.1.0.0/16\", "
                    "\"stac.internal\"] (a JSON list); default: public addresses only.")
    # Limits of request bodies (docs/administration/security.md)
    max_request_body_bytes: int = Field(
        10 * 1024**2, ge=1024, description="Largest request body accepted (413 beyond), "
                                           "except file uploads (PUT /files/..., streamed "
                                           "under the storage quota).")
    max_json_depth: int = Field(
        100, ge=2, description="Deepest nesting of objects and arrays a JSON request body may "
                               "have; deeper bodies are refused with 400 BadRequest.")
    max_graph_nodes: int = Field(
        5000, ge=1, description="Most process graph nodes (callbacks included) one request "
                                "body may hold.")
    max_graph_chain: int = Field(
        300, ge=1, description="Longest chain of nodes (each using the previous one's result) "
                               "a process graph may have.")

    # Limits of synchronous requests, checked by a dry run before they run, and the rates of
    # the estimates (docs/administration/limits.md)
    sync_max_bytes: int = Field(
        2 * 1024**3, ge=1, description="Most bytes one node of a synchronous request (POST "
                                        "/result) may hold, or its loads may read, by the dry "
                                        "run; bigger requests are refused before they run "
                                        "(run them as batch jobs).")
    sync_max_pixels: int = Field(
        500_000_000, ge=1, description="Most values (pixels x dates x bands) one node of a "
                                       "synchronous request may hold or its loads may read.")
    sync_max_seconds: float = Field(
        300, gt=0, description="Longest estimated duration of a synchronous request; longer "
                               "ones are refused before they run (run them as batch jobs).")
    sync_max_memory: int = Field(
        4 * 1024**3, ge=1, description="Most bytes of task results the computation of one "
                                       "synchronous request may hold at once (checked as its "
                                       "tasks finish, on local threads); a request over it is "
                                       "stopped (run it as a batch job).")
    sync_result_ram_dir: str = Field(
        "/dev/shm", description="RAM-backed folder (tmpfs) the results of synchronous requests "
                                "are written to while they fit sync_result_ram_bytes (never "
                                "written back to a disk); empty: always the temporary folder "
                                "on disk. Used only if it exists and is writable.")
    sync_result_ram_bytes: int = Field(
        4 * 1024**3, ge=0, description="Most bytes the results of all running synchronous "
                                       "requests may take in sync_result_ram_dir at once (by "
                                       "their size in the dry run); a result that does not "
                                       "fit, or does not fit the folder's free space, is "
                                       "written to the temporary folder on disk. 0: never.")
    estimate_start_seconds: float = Field(
        2.0, ge=0, description="Fixed part of an estimated duration (start, metadata).")
    estimate_read_bytes_per_second: float = Field(
        60e6, gt=0, description="Read rate of the estimates: stored bytes read per second.")
    estimate_compute_bytes_per_second: float = Field(
        400e6, gt=0, description="Compute rate of the estimates: bytes the nodes of a graph "
                                 "hold, processed per second.")
    estimate_write_bytes_per_second: float = Field(
        80e6, gt=0, description="Write rate of the estimates: output bytes written per second.")

    # Python UDFs (docs/administration/udf-sandbox.md)
    udf_enabled: bool = Field(
        True, description="false switches run_udf off for everyone (FeatureUnsupported).")
    udf_trusted_users: str = Field(
        "", description="Comma-separated user ids whose UDFs may run without a sandbox when "
                        "bubblewrap is not available; everyone else's UDFs are then refused.")
    udf_cpu_seconds: int = Field(600, ge=1, description="CPU seconds of one UDF process.")
    udf_memory_bytes: int = Field(
        2 * 1024**3, ge=256 * 1024**2, description="Address space of one UDF process.")
    udf_max_processes: int = Field(
        64, ge=1, description="Processes and threads one UDF sandbox may run.")
    udf_file_bytes: int = Field(
        256 * 1024**2, ge=0, description="Largest file a UDF may write.")
    udf_tmp_bytes: int = Field(
        256 * 1024**2, ge=1024**2, description="Size of the UDF's private /tmp (memory).")
    udf_timeout_seconds: float = Field(
        300, gt=0, description="Wall-clock time a UDF may take for one block.")
    udf_output_bytes: int = Field(
        1024**3, ge=1, description="Largest block a UDF may return.")
    udf_block_size: int = Field(
        512, ge=8, description="Largest side in pixels of the spatial blocks a UDF over a whole "
                               "dimension is called with (blocks are smaller when the other "
                               "dimensions are long: at most an eighth of udf_memory_bytes).")
    udf_idle_seconds: float = Field(
        300, gt=0, description="A warm UDF process unused for this long exits.")
    udf_spare_runners: int = Field(
        2, ge=0, description="UDF processes kept started ahead, each in its own fresh sandbox "
                             "with Python and the libraries imported (~120 MB each): a UDF "
                             "takes one instead of waiting for a start (~0.8 s of CPU). 0: "
                             "started when needed only.")
    udf_spares_at_start: bool = Field(
        True, description="Start the spare UDF processes when the server starts (else at "
                          "the first UDF).")
    udf_bwrap: str = Field(
        "bwrap", description="The bubblewrap executable that sandboxes UDFs (name or path).")
    udf_dependencies: Literal["off", "allow-list", "any"] = Field(
        "any", description="Packages a UDF declares (PEP 723 `dependencies`) that the runtime "
                           "lacks: 'any' installs them, 'allow-list' only those of "
                           "udf_allowed_packages, 'off' none (the UDF is refused).")
    udf_allowed_packages: str = Field(
        "", description="Comma-separated package names UDFs may have installed when "
                        "udf_dependencies is 'allow-list'.")
    udf_package_index: str = Field(
        "", description="Index the packages UDFs declare are installed from: a URL (pip's "
                        "--index-url), empty for pip's own configuration (PyPI), 'none' for "
                        "no index (only udf_find_links).")
    udf_find_links: str = Field(
        "", description="Comma-separated folders or URLs of wheels (pip's --find-links).")
    udf_install_timeout_seconds: float = Field(
        300, gt=0, description="Longest time one installation of UDF dependencies may take.")

    def fetch_allowed(self) -> list[str]:
        """What user fetches may reach beyond the public internet: the administrator's
        TERRACUBE_FETCH_ALLOWED_HOSTS and this server's own API port ("host:port"), so the
        signed results link of a batch job can be read back with load_stac."""
        return [*self.fetch_allowed_hosts, *self.own_addresses()]

    def own_addresses(self) -> list[str]:
        """"host:port" of this server's API: where it listens and its public URL."""
        own = {(self.host, self.port)}
        if self.host in ("0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):
            own |= {("127.0.0.1", self.port), ("localhost", self.port)}
        if self.public_url:
            parts = urllib.parse.urlsplit(self.public_url)
            if parts.hostname:
                default = 443 if parts.scheme == "https" else 80
                own.add((parts.hostname, parts.port or default))
        return sorted(f"{host.lower()}:{port}" for host, port in own if port)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Resolve now so a later chdir (or a worker process) sees the same folder.
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'terracube.db'}"
        if self.public_url:
            self.public_url = self.public_url.rstrip("/")
        self.root_path = ("/" + self.root_path.strip("/")) if self.root_path.strip("/") else ""
        for entry in (e.strip() for e in self.forwarded_allow_ips.split(",")):
            if entry and entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"forwarded_allow_ips: {entry!r} is neither an IP "
                                     "address nor a network (CIDR)") from None
        if self.oidc_providers_file is not None:
            self.oidc_providers = _read_providers(self.oidc_providers_file)
        ids = [p.id for p in self.oidc_providers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"OpenID Connect provider ids must be unique, got {ids}")
        return self


def _read_providers(path: Path) -> list[OidcProviderSettings]:
    """The provider list of TERRACUBE_OIDC_PROVIDERS_FILE (a JSON list, or {"providers": [...]}
    as GET /credentials/oidc answers)."""
    try:
        data = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the OpenID Connect providers from {path}: {e}") from None
    if isinstance(data, dict):
        data = data.get("providers")
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of providers")
    try:
        return [OidcProviderSettings.model_validate(item) for item in data]
    except ValidationError as e:
        raise ValueError(f"{path}: {e}") from None


def is_loopback(host: str) -> bool:
    """True if `host` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
