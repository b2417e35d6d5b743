"""What the batch-job endpoints answer with: job documents, log entries, the results item with
signed links, and the rules behind them (progress per status, when results are available,
how long they are kept, what a cancel logs).

Functions take `url`, which turns an API path into its absolute URL (the routes pass the
request's), so nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from terracube import errors
from terracube.jobs import store as st
from terracube.jobs.logs import rfc3339, stricter
from terracube.jobs.requests import LogQuery, is_job_id
from terracube.jobs.results_stac import (
    inputs,
    item_files,
    results_collection,
    results_item,
    stac_asset,
)
from terracube.jobs.signing import UrlSigner
from terracube.jobs.store import Job, JobLog, JobStore

ApiUrl = Callable[[str], str]
"""An API path (e.g. "/jobs/j-1/logs") -> its absolute URL."""


def _link(url: ApiUrl, rel: str, path: str, *, type: str = "application/json",
          title: str | None = None) -> dict[str, str]:
    out = {"rel": rel, "href": url(path), "type": type}
    if title:
        out["title"] = title
    return out


# --- jobs ----------------------------------------------------------------------------------------
def progress_of(job: Job) -> float:
    # "Submitted and queued jobs only allow the value 0, finished jobs only allow 100."
    if job.status in (st.CREATED, st.QUEUED):
        return 0
    if job.status == st.FINISHED:
        return 100
    return round(job.progress or 0.0, 1)


def job_summary(job: Job) -> dict[str, Any]:
    """A job in GET /jobs: the scalar properties only (the spec recommends leaving out
    `process` and other objects there)."""
    out: dict[str, Any] = {"id": job.job_id, "title": job.title,
                           "description": job.description, "status": job.status,
                           "progress": progress_of(job), "created": rfc3339(job.created),
                           "updated": rfc3339(job.updated), "plan": job.plan,
                           "budget": job.budget, "log_level": job.log_level}
    # Unset properties are left out rather than null: the same for clients, and validators
    # in OpenAPI 3.1 mode (the official suite's) do not know the 3.0 `nullable`.
    return {key: value for key, value in out.items() if value is not None}


def job_document(job: Job, url: ApiUrl, *, costs: float = 0.0,
                 default_plan: str | None = None) -> dict[str, Any]:
    """GET /jobs/{job_id}; `costs` of its usage so far (processing/costs.py), the plan it is
    charged with (the server's default unless it named one)."""
    out = job_summary(job)
    if job.plan is None and default_plan is not None:
        out["plan"] = default_plan
    out["process"] = job.process
    out["costs"] = costs  # always a number: the client indexes describe()['costs']
    # The API's `budget` is nullable with default null, null meaning no limit: shown even
    # when unset (decision record 0012; the list leaves unset properties out).
    out["budget"] = job.budget
    if job.usage:
        out["usage"] = job.usage
    links = [_link(url, "monitor", f"/jobs/{job.job_id}/logs", title="Batch job logs")]
    if job.asset_count:
        links.append(_link(url, "result", f"/jobs/{job.job_id}/results",
                           title="Batch job results"))
    out["links"] = links
    return out


def jobs_list(jobs: list[Job], cursor: str | None, limit: int | None,
              url: ApiUrl) -> dict[str, Any]:
    """GET /jobs: one page, with a `next` link if there are more."""
    links = []
    if cursor is not None:
        links.append({"rel": "next", "type": "application/json",
                      "href": url("/jobs") + f"?limit={limit}&page={cursor}"})
    return {"jobs": [job_summary(job) for job in jobs], "links": links}


def cancel_message(before: Job, after: Job) -> str | None:
    """The log entry of a user's cancel, None if it changed nothing."""
    if before.status not in st.ACTIVE or after.status == before.status:
        return None
    if after.status == st.CANCELED:
        return (f"Canceled by the user at {after.progress:.0f} %; the {after.asset_count} "
                "result file(s) written until then stay available "
                "(GET /jobs/{job_id}/results?partial=true).")
    return f"Canceled by the user while {before.status}; no results were kept."


# --- logs ----------------------------------------------------------------------------------------
def log_entry(entry: JobLog) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(entry.id), "level": entry.level, "message": entry.message,
                           "time": rfc3339(entry.time)}
    if entry.code:
        out["code"] = entry.code
    if entry.path:
        out["path"] = entry.path
    if entry.data is not None:
        out["data"] = entry.data
    if entry.usage:
        out["usage"] = entry.usage
    out["links"] = []
    return out


def job_logs(jobs: JobStore, job: Job, query: LogQuery, limit: int | None,
             url: ApiUrl) -> dict[str, Any]:
    """GET /jobs/{job_id}/logs: entries at or above the stricter of the job's log_level and
    the asked level, after `query.after`; a `next` link when `limit` cut the list."""
    effective = stricter(job.log_level, query.level)
    entries = jobs.logs(job.job_id, after=query.after, min_level=effective,
                        limit=None if limit is None else limit + 1)
    links = []
    if limit is not None and len(entries) > limit:
        entries = entries[:limit]
        links.append({"rel": "next", "type": "application/json",
                      "href": url(f"/jobs/{job.job_id}/logs")
                      + f"?offset={entries[-1].id}&level={query.level}&limit={limit}"})
    return {"level": effective, "logs": [log_entry(e) for e in entries], "links": links}


# --- results -------------------------------------------------------------------------------------
def unavailable_results(jobs: JobStore, job: Job, partial: bool) -> dict[str, Any] | None:
    """None if the results can be listed; the error log entry (HTTP 424) of a failed job;
    JobNotFinished / JobNotStarted otherwise. Partial results exist only once a run started:
    running, canceled or failed jobs."""
    partial = partial and job.status in (st.RUNNING, st.CANCELED, st.ERROR)
    if job.status == st.FINISHED or partial:
        return None
    if job.status == st.ERROR:
        entry = jobs.last_error(job.job_id)
        return log_entry(entry) if entry else {
            "id": "0", "level": "error", "message": "The batch job failed."}
    if job.status in st.ACTIVE:
        raise errors.JobNotFinished(
            f"The batch job '{job.job_id}' is {job.status} ({progress_of(job):.0f} %); the "
            "results are available once it is finished (or ask for partial=true).")
    raise errors.JobNotStarted(
        f"The batch job '{job.job_id}' is {job.status}: start it with POST "
        f"/jobs/{job.job_id}/results." + (" Partial results: ?partial=true."
                                           if job.asset_count else ""))


def available_until(job: Job, expires: int, retention_days: float | None) -> datetime:
    """Until when the links of a results document work: their expiry, or the end of the
    retention period if that comes first."""
    until = datetime.fromtimestamp(expires, UTC)
    if retention_days and job.ended is not None:
        kept = st.aware(job.ended) + timedelta(days=retention_days)
        until = min(until, kept)
    return until


def _signed_url(url: ApiUrl, signer: UrlSigner, job: Job, path: str, scope: str,
                expires: int) -> str:
    """`path` under the job's results, with a signature of `scope` (what the link opens)."""
    signature = signer.sign(job.job_id, job.results_run or "", scope, expires)
    return (url(f"/jobs/{job.job_id}/results/{path}")
            + f"?expires={expires}&signature={signature}")


def signed_asset_url(url: ApiUrl, signer: UrlSigner, job: Job, asset: str,
                     expires: int) -> str:
    return _signed_url(url, signer, job, f"assets/{asset}", asset, expires)


def signed_item_url(url: ApiUrl, signer: UrlSigner, job: Job, expires: int) -> str:
    """The results as one STAC Item (openEO API 1.0 style), signed."""
    return _signed_url(url, signer, job, "item.json", "", expires)


def signed_collection_url(url: ApiUrl, signer: UrlSigner, job: Job, expires: int) -> str:
    """The results Collection, signed (its `canonical` link)."""
    return _signed_url(url, signer, job, COLLECTION_SCOPE, COLLECTION_SCOPE, expires)


COLLECTION_SCOPE = "collection.json"
ITEM_SCOPE = "items/"
"""What a signature of the Collection and of its Items covers (asset names have no '/')."""


def signed_file_item_url(url: ApiUrl, signer: UrlSigner, job: Job, name: str,
                         expires: int) -> str:
    """The Item of one result file in the results Collection, signed."""
    return _signed_url(url, signer, job, f"items/{quote(name, safe='')}", ITEM_SCOPE + name,
                       expires)


def signed_assets(url: ApiUrl, signer: UrlSigner, job: Job, expires: int) -> dict[str, dict]:
    return {info["name"]: stac_asset(info, signed_asset_url(url, signer, job, info["name"],
                                                            expires))
            for info in job.assets or []}


MODEL_ITEM = "ml_model_metadata.json"
"""The Item id of a trained model in the results Collection, CDSE's name: users' programs find
the model's URL as the link whose href contains it (the openeo client's ML guide, the community
RandomForest and DynamicLandCoverMapping examples)."""


def _item_name(job: Job, info: dict) -> str:
    """The id of a result file's Item: its file name, MODEL_ITEM for the one model."""
    if info.get("model") and sum(1 for i in job.assets or [] if i.get("model")) == 1:
        return MODEL_ITEM
    return str(info["name"])


def _item_links(url: ApiUrl, signer: UrlSigner, job: Job, expires: int) -> list[dict]:
    return [{"rel": "item", "type": "application/geo+json", "title": info["name"],
             "href": signed_file_item_url(url, signer, job, _item_name(job, info), expires)}
            for info in item_files(job)]


def results_document(job: Job, url: ApiUrl, signer: UrlSigner,
                     retention_days: float | None, *, as_item: bool = False) -> dict[str, Any]:
    """GET /jobs/{job_id}/results: a STAC Collection whose assets are signed download links
    and whose `item` links lead to one signed Item per file; one STAC Item with all files
    when `as_item` (a client asking for application/geo+json)."""
    expires = signer.expiry()
    until = available_until(job, expires, retention_days)
    assets = signed_assets(url, signer, job, expires)
    if as_item:
        links = [
            _link(url, "self", f"/jobs/{job.job_id}/results", type="application/geo+json"),
            {"rel": "canonical", "type": "application/geo+json",
             "href": signed_item_url(url, signer, job, expires)},
            _link(url, "related", f"/jobs/{job.job_id}", title="The batch job"),
            *derived_from(job, url),
        ]
        return results_item(job, assets, links, status=job.status, expires=until)
    collection = signed_collection_url(url, signer, job, expires)
    links = [
        _link(url, "self", f"/jobs/{job.job_id}/results"),
        {"rel": "canonical", "type": "application/json", "href": collection},
        {"rel": "root", "type": "application/json", "href": collection},
        {"rel": "alternate", "type": "application/geo+json",
         "href": signed_item_url(url, signer, job, expires),
         "title": "All result files in one STAC Item"},
        _link(url, "related", f"/jobs/{job.job_id}", title="The batch job"),
        *derived_from(job, url),
        *_item_links(url, signer, job, expires),
    ]
    return results_collection(job, assets, links, status=job.status, expires=until)


def derived_from(job: Job, url: ApiUrl) -> list[dict[str, str]]:
    """`derived_from` links to what the job read: its collections, load_stac URLs and the
    results of jobs it loaded (load_result)."""
    links = []
    for kind, ref in inputs(job.process):
        if kind == "collection":
            links.append({"rel": "derived_from", "href": url(f"/collections/{ref}"),
                          "type": "application/json", "title": f"Collection {ref}"})
        elif kind == "job":
            links.append({"rel": "derived_from", "href": url(f"/jobs/{ref}/results"),
                          "type": "application/json",
                          "title": f"Results of the batch job {ref} (load_result)"})
        else:
            links.append({"rel": "derived_from", "href": ref, "type": "application/json",
                          "title": "STAC input (load_stac)"})
    return links


def signed_results_document(job: Job, url: ApiUrl, signer: UrlSigner, expires: int,
                            self_href: str) -> dict[str, Any]:
    """The results as one Item through its signed link."""
    return results_item(job, signed_assets(url, signer, job, expires),
                        [{"rel": "self", "type": "application/geo+json", "href": self_href},
                         *derived_from(job, url)],
                        status=job.status, expires=datetime.fromtimestamp(expires, UTC))


def signed_results_collection(job: Job, url: ApiUrl, signer: UrlSigner, expires: int,
                              self_href: str) -> dict[str, Any]:
    """The results Collection through its signed `canonical` link (links signed until the
    same time)."""
    links = [{"rel": "self", "type": "application/json", "href": self_href},
             {"rel": "root", "type": "application/json", "href": self_href},
             *derived_from(job, url), *_item_links(url, signer, job, expires)]
    return results_collection(job, signed_assets(url, signer, job, expires), links,
                              status=job.status, expires=datetime.fromtimestamp(expires, UTC))


def signed_file_item(job: Job, name: str, url: ApiUrl, signer: UrlSigner, expires: int,
                     self_href: str) -> dict[str, Any]:
    """The Item of the result file `name` through its signed link; NotFound if the job has
    no such file (or it has no Item of its own)."""
    info = next((i for i in item_files(job) if _item_name(job, i) == name), None)
    if info is None:
        raise errors.NotFound(f"The batch job '{job.job_id}' has no result item '{name}'.")
    file_name = str(info["name"])
    collection = signed_collection_url(url, signer, job, expires)
    links = [{"rel": "self", "type": "application/geo+json", "href": self_href},
             {"rel": "collection", "type": "application/json", "href": collection},
             {"rel": "parent", "type": "application/json", "href": collection},
             {"rel": "root", "type": "application/json", "href": collection},
             *derived_from(job, url)]
    asset = stac_asset(info, signed_asset_url(url, signer, job, file_name, expires))
    return results_item(job, {file_name: asset}, links, status=job.status,
                        expires=datetime.fromtimestamp(expires, UTC), infos=[info],
                        item_id=name)


def signed_job(jobs: JobStore, signer: UrlSigner, job_id: str, asset: str,
               expires: str | None, signature: str | None) -> Job:
    """The job of a signed link (ResultLinkInvalid/ResultLinkExpired if the link is not
    right); NotFound if the job has no results (any more)."""
    job = jobs.find(job_id) if is_job_id(job_id) else None
    run = job.results_run if job is not None and job.results_run else ""
    signer.check(job_id, run, asset, expires, signature)
    if job is None or not job.results_run:
        raise errors.NotFound(f"The batch job '{job_id}' has no results (any more).")
    return job


def asset_info(job: Job, asset: str) -> dict[str, Any]:
    info = next((a for a in job.assets or [] if a.get("name") == asset), None)
    if info is None:
        raise errors.NotFound(f"The batch job '{job.job_id}' has no result file '{asset}'.")
    return info
