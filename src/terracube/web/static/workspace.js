// My workspace: the quota bar (GET /me), the files with their sizes, upload and delete.

import { filePath, request } from "./api.js";
import { bytes, clear, el, when } from "./dom.js";

const table = document.querySelector("#file-table tbody");
const quota = document.getElementById("quota");
const form = document.getElementById("upload-form");
const status = document.getElementById("upload-status");

export async function showWorkspace() {
  const [me, files] = await Promise.all([request("me"), request("files")]);
  const { quota: total, free } = me.storage || {};
  const used = total - free;
  const percent = total ? (100 * used) / total : 0;
  quota.querySelector(".used").style.width = `${Math.min(100, percent)}%`;
  quota.classList.toggle("full", percent > 90);
  quota.querySelector(".quota-text").textContent =
    `${bytes(used)} of ${bytes(total)} used (${percent.toFixed(1)} %), ${bytes(free)} free`;
  quota.dataset.used = String(used);
  clear(table);
  for (const file of files.files) {
    table.append(el("tr", { "data-file": file.path },
      el("td", {}, file.path),
      el("td", { class: "number" }, bytes(file.size)),
      el("td", {}, when(file.modified)),
      el("td", {}, el("button", { type: "button", class: "danger",
                                  onclick: () => remove(file.path) }, "Delete"))));
  }
  if (!files.files.length) {
    table.append(el("tr", {}, el("td", { colspan: 4, class: "hint" }, "No files yet.")));
  }
}

async function remove(path) {
  if (!window.confirm(`Delete ${path}?`)) return;
  await request(filePath(path), { method: "DELETE" });
  await showWorkspace();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  const folder = form.elements.folder.value.trim().replace(/^\/+|\/+$/g, "");
  const path = folder ? `${folder}/${file.name}` : file.name;
  status.textContent = `Uploading ${path}…`;
  status.className = "";
  try {
    await request(filePath(path), { method: "PUT", body: file,
                                    headers: { "Content-Type": "application/octet-stream" } });
    status.textContent = `Uploaded ${path} (${bytes(file.size)}).`;
    form.reset();
  } catch (error) {
    status.textContent = `Upload failed: ${error.message}`;
    status.className = "error";
  }
  await showWorkspace();
});
