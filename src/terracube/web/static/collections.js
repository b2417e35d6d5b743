// Collections: the list, and for one collection its description, bands, temporal extent,
// footprint on the map and a preview layer (its `rel: xyz` link, or an XYZ service of ours).

import { request } from "./api.js";
import { clear, el } from "./dom.js";
import { showFootprints, showTiles } from "./map.js";

const list = document.getElementById("collection-list");
const detail = document.getElementById("collection-detail");
let loaded = false;

export async function showCollections() {
  if (loaded) return;
  const body = await request("collections");
  loaded = true;
  clear(list);
  for (const c of body.collections) {
    const item = el("li", {},
      el("button", { type: "button", class: "link", "data-collection": c.id,
                     onclick: () => openCollection(c.id, item) },
        c.title || c.id),
      c.title && c.title !== c.id ? el("small", { class: "hint" }, ` ${c.id}`) : null);
    list.append(item);
  }
}

function bandsOf(stac) {
  for (const dim of Object.values(stac["cube:dimensions"] || {})) {
    if (dim.type === "bands" && dim.values) return dim.values;
  }
  return ((stac.summaries || {})["eo:bands"] || []).map((b) => b.name);
}

function temporalOf(stac) {
  const interval = (((stac.extent || {}).temporal || {}).interval || [])[0] || [];
  return `${interval[0] || "open"} – ${interval[1] || "open"}`;
}

export async function openCollection(id, item) {
  for (const li of list.children) li.classList.toggle("active", li === item);
  clear(detail).append(el("p", { class: "hint" }, "Loading…"));
  const stac = await request(`collections/${encodeURIComponent(id)}`);
  const bboxes = (((stac.extent || {}).spatial || {}).bbox || []).filter((b) => b.length === 4);
  const bands = bandsOf(stac);
  clear(detail).append(
    el("h3", {}, stac.title || stac.id),
    el("p", {}, stac.description || ""),
    el("dl", {},
      el("dt", {}, "Identifier"), el("dd", {}, el("code", {}, stac.id)),
      el("dt", {}, "Temporal extent"), el("dd", { class: "temporal" }, temporalOf(stac)),
      el("dt", {}, "Spatial extent"),
      el("dd", {}, bboxes.map((b) => b.map((v) => Number(v).toFixed(3)).join(", ")).join(" · ")),
      el("dt", {}, `Bands (${bands.length})`),
      el("dd", { class: "bands" }, bands.map((b) => el("span", { class: "band" }, b)))),
    el("p", { class: "preview-status hint" }, "Preview layer: loading…"));
  showFootprints(bboxes, stac.title || stac.id);
  const status = detail.querySelector(".preview-status");
  try {
    const url = await previewUrl(stac, bboxes[0], bands);
    showTiles(`Preview: ${stac.id}`, url, bboxes[0]);
    status.textContent = "Preview layer on the map (switch it in the map's layer list).";
  } catch (error) {
    status.textContent = `No preview layer: ${error.message}`;
    status.classList.add("error");
  }
}

// The collection's own preview link; otherwise an XYZ service of a load_collection graph.
async function previewUrl(stac, bbox, bands) {
  const link = (stac.links || []).find((l) => l.rel === "xyz");
  if (link) return link.href;
  const args = { id: stac.id, bands: bands.slice(0, 1) };
  if (bbox) args.spatial_extent = { west: bbox[0], south: bbox[1], east: bbox[2], north: bbox[3] };
  const graph = { load: { process_id: "load_collection", arguments: args } };
  const temporal = Object.entries(stac["cube:dimensions"] || {})
    .find(([, d]) => d.type === "temporal");
  if (temporal) {
    graph.reduce = { process_id: "reduce_dimension", arguments: {
      data: { from_node: "load" }, dimension: temporal[0], reducer: { process_graph: {
        m: { process_id: "median", arguments: { data: { from_parameter: "data" } },
             result: true } } } }, result: true };
  } else {
    graph.load.result = true;
  }
  const response = await request("services", { method: "POST", raw: true, body: {
    type: "XYZ", title: `Preview of ${stac.id}`, process: { process_graph: graph } } });
  const id = response.headers.get("OpenEO-Identifier");
  return (await request(`services/${encodeURIComponent(id)}`)).url;
}
