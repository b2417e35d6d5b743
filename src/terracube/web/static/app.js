// The page: log in (HTTP basic against /credentials/basic, or an OpenID Connect provider of
// the server: oidc.js; the bearer stays in sessionStorage), then the tabs — collections, my
// jobs, my workspace and, for administrators, all users.

import { apiRoot, login, request, session, whenUnauthorized } from "./api.js";
import { isAdmin, showAdmin } from "./admin.js";
import { showCollections } from "./collections.js";
import { clear, el } from "./dom.js";
import { hideJobs, showJobs } from "./jobs.js";
import { createMap, invalidate } from "./map.js";
import { canSignIn, completeSignIn, pageClients, signIn } from "./oidc.js";
import { showWorkspace } from "./workspace.js";

const loginSection = document.getElementById("login");
const loginForm = document.getElementById("login-form");
const loginError = document.getElementById("login-error");
const app = document.getElementById("app");
const tabs = document.getElementById("tabs");
const account = document.getElementById("account");
const SHOW = { collections: showCollections, jobs: showJobs, workspace: showWorkspace,
               admin: showAdmin };

// The openEO Web Editor, opened on this server's API.
const editor = document.getElementById("web-editor");
editor.href = `${document.body.dataset.webEditor}?server=${encodeURIComponent(apiRoot.href)}`;

let map = null;

function showLogin(message = "") {
  hideJobs();
  app.hidden = true;
  tabs.hidden = true;
  account.hidden = true;
  loginSection.hidden = false;
  loginError.textContent = message;
  loginForm.elements.user.focus();
  showProviders();
}

async function showProviders() {
  // OpenID Connect providers, when the server offers them (404 or none: nothing shown). Those
  // with a client for this page get a button; the others are listed for the openEO clients.
  let providers = [];
  try {
    providers = (await request("credentials/oidc")).providers || [];
  } catch { /* no OIDC on this server */ }
  const usable = new Map(canSignIn()
    ? pageClients(providers).map(({ provider, client }) => [provider.id, client]) : []);
  const list = clear(document.getElementById("oidc-providers"));
  for (const p of providers) {
    const client = usable.get(p.id);
    const name = p.title || p.id;
    list.append(el("li", {}, client
      ? el("button", { type: "button", class: "oidc-sign-in", "data-provider": p.id,
                       onclick: () => startSignIn(p, client) }, `Sign in with ${name}`)
      : name, " ", el("small", { class: "hint" }, p.issuer || "")));
  }
  document.getElementById("oidc-elsewhere").hidden = usable.size === providers.length;
  document.getElementById("oidc").hidden = providers.length === 0;
}

async function startSignIn(provider, client) {
  loginError.textContent = "";
  try {
    await signIn(provider, client);  // leaves the page
  } catch (error) {
    loginError.textContent = error.message;
  }
}

// The end of a sign-in with a provider (the page was opened by its redirect): the account's
// name from GET /me. Returns whether the page is signed in.
async function finishSignIn() {
  let bearer;
  try {
    bearer = await completeSignIn();
  } catch (error) {
    showLogin(error.message);
    return true;  // handled: the login box with the reason
  }
  if (!bearer) return false;
  session.save("", bearer);
  try {
    const me = await request("me");
    session.save(me.name ? `${me.name} (${me.user_id})` : me.user_id, bearer);
  } catch (error) {
    session.clear();
    showLogin(`The server does not accept the sign-in: ${error.message}`);
    return true;
  }
  await showApp();
  return true;
}

async function showApp() {
  loginSection.hidden = true;
  app.hidden = false;
  tabs.hidden = false;
  account.hidden = false;
  document.getElementById("user-name").textContent = session.user;
  if (!map) map = createMap(document.getElementById("map"));
  invalidate();
  tabs.querySelector('[data-tab="admin"]').hidden = !(await isAdmin());
  await selectTab("collections");
}

async function selectTab(name) {
  for (const button of tabs.querySelectorAll("button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll(".tab")) {
    section.hidden = section.id !== `tab-${name}`;
  }
  if (name !== "jobs") hideJobs();
  document.body.dataset.tab = name;
  try {
    await SHOW[name]();
  } catch (error) {
    const section = document.getElementById(`tab-${name}`);
    section.prepend(el("p", { class: "error" }, `Could not load: ${error.message}`));
  }
}

tabs.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-tab]");
  if (button) selectTab(button.dataset.tab);
});

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  loginError.textContent = "";
  const user = loginForm.elements.user.value.trim();
  try {
    await login(user, loginForm.elements.password.value);
  } catch (error) {
    loginError.textContent = error.message;
    return;
  }
  loginForm.reset();
  await showApp();
});

document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  showLogin();
});

whenUnauthorized(() => {
  session.clear();
  showLogin("Your session has ended; please log in again.");
});

if (!(await finishSignIn())) {
  if (session.bearer) showApp(); else showLogin();
}
