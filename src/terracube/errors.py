"""openEO errors: one exception class per error code of the openEO API 1.2 (errors.json).

Every code of ../shared/openeo-api/errors.json has a class here with its HTTP status, and every
`OpenEOError` subclass of terracube has a code from errors.json, a process exception declared
by the process definitions (process_errors.py), or one of `EXTRA_CODES` below; both directions
are checked by tests/test_errors.py.
"""

from __future__ import annotations

import uuid
from typing import Any


class OpenEOError(Exception):
    """Base of every user-facing failure; rendered as openEO error JSON by the API."""

    code: str = "Internal"
    status: int = 500

    def __init__(self, message: str, *, node_id: str | None = None,
                 argument: str | None = None, links: list[dict] | None = None) -> None:
        self.node_id = node_id
        self.argument = argument
        self.links = links or []
        self.id = uuid.uuid4().hex
        super().__init__(message)

    @property
    def message(self) -> str:
        msg = str(self.args[0]) if self.args else self.code
        where = []
        if self.node_id:
            where.append(f"node '{self.node_id}'")
        if self.argument:
            where.append(f"argument '{self.argument}'")
        if where and not msg.startswith("["):
            msg = f"[{', '.join(where)}] {msg}"
        return msg

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "message": self.message, "links": self.links}

    def at(self, node_id: str | None = None, argument: str | None = None) -> OpenEOError:
        """Attach the failing node/argument unless a deeper frame already did."""
        if self.node_id is None and node_id is not None:
            self.node_id = node_id
        if self.argument is None and argument is not None:
            self.argument = argument
        return self


# Codes of ours that are neither in errors.json nor process exceptions, and why they exist.
EXTRA_CODES: dict[str, str] = {
    "PayloadTooLarge": "api/body_limit.py: HTTP 413 for a request body over "
                       "TERRACUBE_MAX_REQUEST_BODY_BYTES (uploads stream under the quota).",
    "RangeNotSatisfiable": "api/responses.py: HTTP 416 for a Range header outside the file.",
    "OidcProviderUnavailable": "auth/oidc.py: HTTP 503 when an OpenID Connect provider does "
                               "not answer, so a bearer token of it cannot be checked (the "
                               "code openeo-python-driver uses).",
    "TooManyRequests": "HTTP 429 with Retry-After: repeated wrong passwords for one user "
                       "name (api/login_limit.py), too many queued batch jobs "
                       "(jobs/store.py) or concurrent synchronous requests of one user "
                       "(api/user_limits.py).",
    "BadRequest": "a request that cannot be parsed (malformed JSON, a path, query or body "
                  "field of the wrong type) before any openEO rule applies.",
    "MethodNotAllowed": "api/errors.py: HTTP 405 for a known path with a method it does not "
                        "have (errors.json has no code for it).",
    "ResultLinkInvalid": "jobs/signing.py: a signed result link that was tampered with or "
                         "belongs to another job (ResultLinkExpired covers only expiry).",
    "ProcessNamespaceInvalid": "udp/remote.py: a process namespace URL that cannot be resolved "
                               "(the code of the API's remote-process-definition extension).",
}


class BadRequest(OpenEOError):
    """The request is malformed (not JSON, wrong JSON structure, bad query parameter)."""

    code = "BadRequest"
    status = 400


def _error(code: str, status: int, doc: str) -> type[OpenEOError]:
    cls = type(code, (OpenEOError,), {"code": code, "status": status, "__doc__": doc})
    return cls


# Extensions of the API
ProcessNamespaceInvalid = _error("ProcessNamespaceInvalid", 400,
                                 "The process namespace (a URL) cannot be resolved.")



class TooManyRequests(OpenEOError):
    """A per-user limit is reached for now (HTTP 429); `retry_after` seconds go into the
    response's Retry-After header, which clients (the official one on GET, its job manager
    on POST too) wait for before they try again."""

    code = "TooManyRequests"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}


# General
Internal = _error("Internal", 500, "Unexpected server-side failure.")
NotFound = _error("NotFound", 404, "The requested resource does not exist.")
FeatureUnsupported = _error("FeatureUnsupported", 501, "The feature is not supported.")
RequestTimeout = _error("RequestTimeout", 408, "The request took too long.")
InfrastructureMaintenance = _error("InfrastructureMaintenance", 503,
                                   "The service is down for maintenance.")
InfrastructureBusy = _error("InfrastructureBusy", 503, "The service is overloaded.")
UnsupportedApiVersion = _error("UnsupportedApiVersion", 404, "The API version is not supported.")
# Data discovery
CollectionNotFound = _error("CollectionNotFound", 404, "Unknown collection id.")
# Files
StorageFailure = _error("StorageFailure", 500, "Writing to the storage failed.")
StorageQuotaExceeded = _error("StorageQuotaExceeded", 400, "The user's quota is exceeded.")
FileNotFound = _error("FileNotFound", 404, "No such file in the workspace.")
FilePathInvalid = _error("FilePathInvalid", 400, "The file path is invalid.")
FileOperationUnsupported = _error("FileOperationUnsupported", 400, "Not an operation on files.")
FolderOperationUnsupported = _error("FolderOperationUnsupported", 400, "Not on folders.")
ContentTypeInvalid = _error("ContentTypeInvalid", 400, "Wrong Content-Type.")
FileSizeExceeded = _error("FileSizeExceeded", 400, "The file is too large.")
FileTypeInvalid = _error("FileTypeInvalid", 400, "The file type is not allowed.")
FileContentInvalid = _error("FileContentInvalid", 400, "The file content is invalid.")
FileLocked = _error("FileLocked", 400, "The file is locked by a running job.")
# Processes and graphs
ProcessGraphNotFound = _error("ProcessGraphNotFound", 404, "Unknown user-defined process.")
ProcessInvalid = _error("ProcessInvalid", 400, "The process is invalid.")
ProcessGraphMissing = _error("ProcessGraphMissing", 400, "No process graph given.")
ProcessGraphInvalid = _error("ProcessGraphInvalid", 400, "The process graph is invalid.")
PredefinedProcessExists = _error("PredefinedProcessExists", 400, "Clashes with a predefined one.")
ProcessGraphComplexity = _error("ProcessGraphComplexity", 400, "The graph is too complex.")
ProcessUnsupported = _error("ProcessUnsupported", 400, "Unknown process.")
ProcessParameterUnsupported = _error("ProcessParameterUnsupported", 400, "Unknown parameter.")
ProcessParameterInvalid = _error("ProcessParameterInvalid", 400, "Invalid argument value.")
ProcessParameterRequired = _error("ProcessParameterRequired", 400,
                                  "A required argument is missing.")
# Batch jobs
JobNotFound = _error("JobNotFound", 404, "Unknown job id.")
JobLocked = _error("JobLocked", 400, "The job is queued or running.")
JobNotFinished = _error("JobNotFinished", 400, "The job has not finished.")
JobNotStarted = _error("JobNotStarted", 400, "The job has not been started.")
ResultLinkExpired = _error("ResultLinkExpired", 410, "The signed link has expired.")
NoDataForUpdate = _error("NoDataForUpdate", 400, "Nothing to update.")
PropertyNotEditable = _error("PropertyNotEditable", 400, "The property cannot be changed.")
BudgetInvalid = _error("BudgetInvalid", 400, "The budget is invalid.")
EstimateComplexity = _error("EstimateComplexity", 500, "The job is too complex to estimate.")
PaymentRequired = _error("PaymentRequired", 402, "The account has no credits left.")
BillingPlanInvalid = _error("BillingPlanInvalid", 400, "Unknown billing plan.")
BillingPlanMissing = _error("BillingPlanMissing", 400, "No billing plan given and no default.")
# Accounts
AuthenticationRequired = _error("AuthenticationRequired", 401, "Authentication is required.")
AuthenticationSchemeInvalid = _error("AuthenticationSchemeInvalid", 403, "Wrong auth scheme.")
TokenInvalid = _error("TokenInvalid", 403, "The token is invalid or expired.")
OidcProviderUnavailable = _error("OidcProviderUnavailable", 503,
                                 "The OpenID Connect provider cannot be reached.")
CredentialsInvalid = _error("CredentialsInvalid", 403, "Wrong user name or password.")
PermissionsInsufficient = _error("PermissionsInsufficient", 403, "Not allowed.")
# Services
ServiceNotFound = _error("ServiceNotFound", 404, "Unknown secondary service.")
ServiceUnsupported = _error("ServiceUnsupported", 400, "Unknown secondary service type.")
ServiceConfigUnsupported = _error("ServiceConfigUnsupported", 400,
                                  "Unknown configuration parameter of the service.")
ServiceConfigInvalid = _error("ServiceConfigInvalid", 400, "Invalid service configuration.")
ServiceConfigRequired = _error("ServiceConfigRequired", 400,
                               "A required service configuration parameter is missing.")
