// The openEO API as the page uses it: the API root relative to the page, the bearer token
// of the session (sessionStorage: gone when the tab closes), JSON requests and openEO errors.
// The bearer is openEO's: "basic//<token>" after a password login, "oidc/<provider>/<access
// token>" after a sign-in with an identity provider (oidc.js).

const TOKEN_KEY = "terracube.bearer";
const USER_KEY = "terracube.user";

export const apiRoot = new URL(document.body.dataset.api, document.baseURI);

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), apiRoot).href;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export const session = {
  get bearer() { return sessionStorage.getItem(TOKEN_KEY); },
  get user() { return sessionStorage.getItem(USER_KEY); },
  save(user, bearer) {
    sessionStorage.setItem(USER_KEY, user);
    sessionStorage.setItem(TOKEN_KEY, bearer);
  },
  clear() {
    sessionStorage.removeItem(USER_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

// Called when the server no longer accepts the token (expired, user removed).
let onUnauthorized = () => {};
export function whenUnauthorized(callback) { onUnauthorized = callback; }

export async function request(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const all = { ...headers };
  if (session.bearer) all.Authorization = `Bearer ${session.bearer}`;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    payload = JSON.stringify(body);
    all["Content-Type"] = "application/json";
  }
  const response = await fetch(apiUrl(path), { method, headers: all, body: payload });
  if (!response.ok) {
    let error = null;
    try { error = await response.json(); } catch { /* not JSON */ }
    if (response.status === 401 || (error && error.code === "TokenInvalid")) onUnauthorized();
    throw new ApiError(response.status, error);
  }
  if (raw) return response;
  if (response.status === 204 || response.headers.get("Content-Length") === "0") return null;
  return response.json();
}

function base64(text) {
  // btoa takes Latin-1 only: encode UTF-8 bytes first (RFC 7617 charset UTF-8)
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes));
}

export async function login(user, password) {
  const response = await fetch(apiUrl("credentials/basic"), {
    headers: { Authorization: `Basic ${base64(`${user}:${password}`)}` },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  session.save(user, `basic//${body.access_token}`);
}

// Paths of /files/{path}: each segment encoded, the slashes kept.
export function filePath(path) {
  return "files/" + path.split("/").map(encodeURIComponent).join("/");
}
