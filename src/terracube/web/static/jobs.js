// My jobs: status and progress (refreshed while the tab is open), one job's logs — errors
// highlighted with the node they came from — its results on the map and download links.

import { request } from "./api.js";
import { clear, el, progressBar, statusBadge, when } from "./dom.js";
import { showFootprints, showTiles } from "./map.js";

const REFRESH_MS = 3000;
const ACTIVE = new Set(["queued", "running"]);
const table = document.querySelector("#job-table tbody");
const detail = document.getElementById("job-detail");
let timer = null;
let selected = null;
let shownResults = null; // the job whose results are on the map
let rendered = ""; // "id status updated" of the job shown in the details

export async function showJobs() {
  await refresh();
  // Not while the browser tab is in the background: nobody looks.
  if (timer === null) {
    timer = setInterval(() => document.hidden || refresh().catch(() => {}), REFRESH_MS);
  }
}

export function hideJobs() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  const body = await request("jobs");
  clear(table);
  for (const job of body.jobs) {
    const row = el("tr", { "data-job": job.id, class: job.id === selected ? "active" : "" },
      el("td", {}, el("button", { type: "button", class: "link", onclick: () => openJob(job.id) },
        job.title || job.id)),
      el("td", {}, statusBadge(job.status)),
      el("td", {}, progressBar(job.progress)),
      el("td", {}, when(job.created)));
    table.append(row);
  }
  if (!body.jobs.length) {
    table.append(el("tr", {}, el("td", { colspan: 4, class: "hint" },
      "No batch jobs yet: create one with an openEO client (POST /jobs).")));
  }
  // The details follow the job while it changes; a stopped job's are not fetched again.
  const current = body.jobs.find((job) => job.id === selected);
  if (current && `${current.id} ${current.status} ${current.updated}` !== rendered) {
    await renderJob(selected);
  }
}

export async function openJob(id) {
  selected = id;
  for (const row of table.children) row.classList.toggle("active", row.dataset.job === id);
  await renderJob(id);
}

async function renderJob(id) {
  const [job, logs] = await Promise.all([
    request(`jobs/${encodeURIComponent(id)}`),
    request(`jobs/${encodeURIComponent(id)}/logs`),
  ]);
  if (id !== selected) return;
  const parts = [
    el("h3", {}, job.title || job.id, " ", statusBadge(job.status)),
    el("p", { class: "hint" }, `${job.id} · created ${when(job.created)}`,
       job.updated ? ` · updated ${when(job.updated)}` : ""),
    progressBar(job.progress),
    el("h4", {}, "Logs"),
    logList(logs.logs),
  ];
  if (job.status === "finished") parts.push(...(await results(job)));
  clear(detail).append(...parts);
  rendered = ACTIVE.has(job.status) ? "" : `${job.id} ${job.status} ${job.updated}`;
}

function logList(entries) {
  if (!entries.length) return el("p", { class: "hint" }, "No log entries.");
  return el("ol", { class: "logs" }, entries.map((entry) => {
    const nodes = (entry.path || []).map((p) => p.node_id).filter(Boolean);
    return el("li", { class: `log log-${entry.level}` },
      el("span", { class: "level" }, entry.level),
      nodes.length ? el("span", { class: "node", title: "process graph node" },
        nodes.join(" › ")) : null,
      entry.code ? el("code", {}, entry.code) : null,
      el("span", { class: "message" }, entry.message));
  }));
}

async function results(job) {
  const item = await request(`jobs/${encodeURIComponent(job.id)}/results`);
  const downloads = el("ul", { class: "downloads" },
    Object.entries(item.assets || {}).map(([name, asset]) => el("li", {},
      el("a", { href: asset.href, download: name }, name),
      asset.type ? el("small", { class: "hint" }, ` ${asset.type}`) : null)));
  const maps = (item.links || []).filter((l) => l.rel === "xyz");
  const buttons = maps.map((link) => el("button", { type: "button",
    onclick: () => showResult(job, item, link) }, `Show ${link.title || "result"} on the map`));
  // The first time a finished job is opened, its first map layer is shown at once.
  if (maps.length && shownResults !== job.id) showResult(job, item, maps[0]);
  return [el("h4", {}, "Results"), downloads,
          maps.length ? el("div", { class: "buttons" }, buttons)
                      : el("p", { class: "hint" }, "No map layer (no GeoTIFF result).")];
}

function showResult(job, item, link) {
  shownResults = job.id;
  // The results are a STAC Collection (its footprint in extent.spatial), or an Item (bbox).
  const bbox = item.bbox || (((item.extent || {}).spatial || {}).bbox || [])[0];
  if (bbox) showFootprints([bbox], job.title || job.id);
  showTiles(`Job ${job.title || job.id}`, link.href, bbox);
}
