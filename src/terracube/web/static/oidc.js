// Sign-in with an OpenID Connect provider of the server (GET /credentials/oidc), in the page:
// the authorization code flow with PKCE (RFC 7636), as the openEO Web Editor does. The page
// sends the browser to the provider's login, the provider sends it back to the page with a
// one-time code, and the page exchanges the code (with the PKCE verifier only it knows) for an
// access token at the provider's token endpoint. The openEO bearer is then
// "oidc/<provider id>/<access token>". No refresh: when the token expires, sign in again.
//
// A provider is offered when one of its `default_clients` (public: no secret) allows
// "authorization_code+pkce" and lists this page's URL among its `redirect_urls` — the URL the
// administrator registered with the provider (docs/administration/oidc.md).

const PENDING_KEY = "terracube.oidc";  // the sign-in under way, while the provider shows its login
const GRANT = "authorization_code+pkce";

// This page's URL as the provider redirects back to it: the page's base, no query or fragment.
export function redirectUrl() {
  const url = new URL(document.baseURI);
  url.search = "";
  url.hash = "";
  return url.href;
}

// The providers this page can sign in with, each with the client it uses.
export function pageClients(providers) {
  const here = redirectUrl();
  const out = [];
  for (const provider of providers) {
    const client = (provider.default_clients || []).find((c) =>
      (c.grant_types || []).includes(GRANT) && (c.redirect_urls || []).includes(here));
    if (client) out.push({ provider, client });
  }
  return out;
}

// PKCE needs SHA-256 (crypto.subtle), which browsers offer on https and localhost pages only.
export function canSignIn() {
  return Boolean(window.isSecureContext && window.crypto && crypto.subtle);
}

function base64url(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(bytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function discover(issuer) {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  let response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`The identity provider ${issuer} cannot be reached.`);
  }
  if (!response.ok) throw new Error(`The identity provider answers HTTP ${response.status}.`);
  return response.json();
}

// Leaves the page for the provider's login.
export async function signIn(provider, client) {
  const meta = await discover(provider.issuer);
  const verifier = randomText(48);  // 64 characters: RFC 7636 wants 43 to 128
  const challenge = base64url(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = randomText(24);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({
    state, verifier, provider: provider.id, title: provider.title || provider.id,
    client: client.id, tokenEndpoint: meta.token_endpoint, redirect: redirectUrl(),
  }));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code", client_id: client.id, redirect_uri: redirectUrl(),
    scope: (provider.scopes || ["openid"]).join(" "), state,
    code_challenge: challenge, code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.href);
}

// On the way back from the provider: the openEO bearer, or null when this page load is not the
// end of a sign-in. Throws when the provider refused or the code cannot be exchanged.
export async function completeSignIn() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has("state") || !(params.has("code") || params.has("error"))) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY);
  // The code is for one use: out of the address bar and the history.
  window.history.replaceState(null, "", redirectUrl());
  if (!pending || pending.state !== params.get("state")) {
    throw new Error("This sign-in was not started in this tab; please sign in again.");
  }
  if (params.has("error")) {
    throw new Error(`${pending.title} refused the sign-in: ` +
                    `${params.get("error_description") || params.get("error")}`);
  }
  let response;
  try {
    response = await fetch(pending.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code"),
        redirect_uri: pending.redirect, client_id: pending.client,
        code_verifier: pending.verifier,
      }),
    });
  } catch {
    throw new Error(`${pending.title} cannot be reached for the token (is its address in ` +
                    "the page's connect-src, and does it allow this page's origin?)");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || !body.access_token) {
    const why = (body && (body.error_description || body.error)) || `HTTP ${response.status}`;
    throw new Error(`${pending.title} gave no access token: ${why}`);
  }
  return `oidc/${pending.provider}/${body.access_token}`;
}
