// All users (administrators only): everybody's jobs and workspace use, from the terracube
// extension GET /terracube/admin/overview (403 for everyone else: the tab stays hidden).

import { request } from "./api.js";
import { bytes, clear, el, progressBar, statusBadge, when } from "./dom.js";

const ADMIN_PATH = "terracube/admin/overview";
const users = document.querySelector("#admin-users tbody");
const jobs = document.querySelector("#admin-jobs tbody");

export async function isAdmin() {
  try {
    await request(ADMIN_PATH);
    return true;
  } catch {
    return false;
  }
}

export async function showAdmin() {
  const body = await request(ADMIN_PATH);
  clear(users);
  for (const user of body.users) {
    const counts = Object.entries(user.jobs).filter(([, n]) => n > 0)
      .map(([status, n]) => `${n} ${status}`).join(", ") || "none";
    const { used, quota } = user.storage;
    users.append(el("tr", { "data-user": user.user_id },
      el("td", {}, user.user_id, user.admin ? el("small", { class: "hint" }, " admin") : null),
      el("td", {}, counts),
      el("td", {}, progressBar(quota ? (100 * used) / quota : 0),
         el("small", {}, `${bytes(used)} of ${bytes(quota)}`)),
      el("td", {}, when(user.last_active))));
  }
  clear(jobs);
  for (const job of body.jobs) {
    jobs.append(el("tr", { "data-job": job.id },
      el("td", {}, job.user_id),
      el("td", {}, job.title || job.id),
      el("td", {}, statusBadge(job.status)),
      el("td", {}, progressBar(job.progress)),
      el("td", {}, when(job.created))));
  }
}
