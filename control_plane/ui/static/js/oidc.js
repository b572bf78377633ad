// The browser's login in AWS: OpenID Connect, authorization code flow with PKCE (RFC 7636, S256),
// against the IdP whose tokens API Gateway's JWT authorizer accepts. The server publishes the
// IdP (issuer, public client id, scopes) in GET /api/v1/configs as `uiOidc` (SQUALL_UI_OIDC);
// when it is null the UI keeps its bearer-token prompt (squall server) or asks nothing.
//
// Theory of operation
// 1. No valid token: a random code_verifier, state and nonce go to sessionStorage; the page
//    goes to the IdP's authorization_endpoint (from its discovery document) with
//    code_challenge = BASE64URL(SHA-256(verifier)) computed with WebCrypto.
// 2. The IdP sends the browser back to /ui/?code=...&state=... The state must be the one
//    this tab stored (else the answer belongs to another login: refused, no exchange); the
//    pending login is used once. The code and verifier go to the token endpoint (a CORS POST
//    from the page: the client is public, there is no secret). The id token's iss, aud and
//    nonce must be this login's.
// 3. The token the authorizer checks (`token`: the access token by default, the id token if
//    so configured) is kept in sessionStorage with its expiry and sent as Authorization: Bearer.
//    Past its expiry the page logs in again at once; a 401 (revoked, altered, expired by the
//    server's clock) asks first, so a token the authorizer never accepts cannot loop.
// No library: WebCrypto and fetch are enough, and nothing but the IdP is contacted.
import { BASE, useAuth } from "./api.js";

const SESSION = "squall.oidc.session"; // { token, idToken, expiresAt }
const PENDING = "squall.oidc.pending"; // { state, nonce, verifier, returnTo }
const SIGNED_OUT = "squall.oidc.signedOut";

export class LoginError extends Error {}

function b64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(n = 32) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

function claimsOf(jwt) {
  const part = String(jwt || "").split(".")[1];
  if (!part) throw new LoginError("the IdP sent a token that is not a JWT");
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function read(key) {
  try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch { return null; }
}

// Where the IdP sends the browser back: the UI's own URL, /ui/, registered as the callback.
export function redirectUri() {
  return new URL("./", document.baseURI).href;
}

export async function loginSettings() {
  const response = await fetch(`${BASE}configs`);
  if (!response.ok) return null;
  const config = await response.json();
  return config && config.uiOidc ? config.uiOidc : null;
}

let discovered = null; // once per page load

async function discover(settings) {
  if (!discovered) discovered = fetchDiscovery(settings).catch((e) => { discovered = null; throw e; });
  return discovered;
}

async function fetchDiscovery(settings) {
  const url = `${settings.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  let doc;
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    doc = await response.json();
  } catch (e) {
    throw new LoginError(`could not read the IdP's discovery document ${url}: ${e.message}`);
  }
  if (doc.issuer !== settings.issuer) throw new LoginError(`the IdP says its issuer is ${doc.issuer}, not ${settings.issuer}`);
  const methods = doc.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) throw new LoginError("the IdP does not support PKCE with S256");
  const tokenOrigin = new URL(doc.token_endpoint).origin;
  if (tokenOrigin !== location.origin && !settings.origins.includes(tokenOrigin))
    throw new LoginError(`the IdP's token endpoint is on ${tokenOrigin}, which ui_oidc.origins does not list`);
  return doc;
}

export async function startLogin(settings, returnTo) {
  const doc = await discover(settings);
  const pending = { state: random(), nonce: random(), verifier: random(), returnTo: returnTo || "" };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  sessionStorage.removeItem(SIGNED_OUT);
  const url = new URL(doc.authorization_endpoint);
  const params = {
    response_type: "code", client_id: settings.clientId, redirect_uri: redirectUri(),
    scope: settings.scopes.join(" "), state: pending.state, nonce: pending.nonce,
    code_challenge: await challengeOf(pending.verifier), code_challenge_method: "S256",
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.href);
  return new Promise(() => {}); // the page is leaving
}

// The callback: /ui/?code=&state= (or ?error=). Returns the hash to go back to.
async function finishLogin(settings, params) {
  const pending = read(PENDING);
  sessionStorage.removeItem(PENDING); // one use, whatever happens next
  history.replaceState(null, "", redirectUri()); // the code never stays in the address bar
  if (!pending || !params.get("state") || params.get("state") !== pending.state)
    throw new LoginError("the login's answer does not match a login this tab started (state mismatch): refused");
  if (params.get("error"))
    throw new LoginError(`the IdP refused the login: ${params.get("error_description") || params.get("error")}`);
  const doc = await discover(settings);
  const form = new URLSearchParams({
    grant_type: "authorization_code", code: params.get("code") || "", redirect_uri: redirectUri(),
    client_id: settings.clientId, code_verifier: pending.verifier,
  });
  let answer;
  try {
    const response = await fetch(doc.token_endpoint, { method: "POST", body: form });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error_description || answer.error || `HTTP ${response.status}`);
  } catch (e) {
    throw new LoginError(`the IdP's token endpoint refused the code: ${e.message}`);
  }
  const identity = claimsOf(answer.id_token);
  const audiences = [].concat(identity.aud);
  if (identity.iss !== settings.issuer || !audiences.includes(settings.clientId))
    throw new LoginError("the id token is not from this issuer for this client: refused");
  if (identity.nonce !== pending.nonce) throw new LoginError("the id token's nonce is not this login's: refused");
  const token = settings.token === "id" ? answer.id_token : answer.access_token;
  if (!token) throw new LoginError(`the IdP sent no ${settings.token} token`);
  let expiresAt = Date.now() + Number(answer.expires_in || 3600) * 1000;
  try { expiresAt = Math.min(expiresAt, claimsOf(token).exp * 1000 || expiresAt); } catch { /* opaque */ }
  sessionStorage.setItem(SESSION, JSON.stringify({ token, idToken: answer.id_token, expiresAt }));
  return pending.returnTo;
}

function current() {
  const session = read(SESSION);
  return session && session.expiresAt > Date.now() ? session : null;
}

let asking = null;
function askToLogIn(settings) {
  if (asking) return asking;
  asking = new Promise(() => {
    const dialog = document.createElement("dialog");
    dialog.setAttribute("aria-labelledby", "login-again-title");
    dialog.innerHTML = `<form method="dialog" class="form-grid">
      <h2 id="login-again-title">Log in again</h2>
      <p>The API refused your login (it expired, was revoked, or was altered).</p>
      <button type="submit">Log in again</button></form>`;
    document.body.append(dialog);
    dialog.addEventListener("close", () => startLogin(settings, location.hash));
    dialog.showModal();
  });
  return asking;
}

function signedOutPage(main, settings, message) {
  main.replaceChildren();
  const heading = document.createElement("h1");
  heading.textContent = message ? "Login refused" : "Signed out";
  const text = document.createElement("p");
  text.textContent = message || "You are signed out of Squall.";
  if (message) { text.className = "error"; text.setAttribute("role", "alert"); }
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Log in";
  button.addEventListener("click", () => startLogin(settings, ""));
  main.append(heading, text, button);
}

async function signOut(settings) {
  const session = read(SESSION);
  sessionStorage.removeItem(SESSION);
  sessionStorage.setItem(SIGNED_OUT, "1");
  try {
    const doc = await discover(settings);
    if (doc.end_session_endpoint) {
      const url = new URL(doc.end_session_endpoint);
      url.searchParams.set("client_id", settings.clientId);
      url.searchParams.set("post_logout_redirect_uri", redirectUri());
      if (session && session.idToken) url.searchParams.set("id_token_hint", session.idToken);
      location.assign(url.href);
      return;
    }
  } catch { /* signed out here at least */ }
  location.reload();
}

// Called once at start. True: route the page; false: this module has taken the page over
// (redirecting to the IdP, or saying why the login failed).
export async function setUpLogin(main) {
  const settings = await loginSettings();
  if (!settings) return true;
  useAuth({
    token: () => (current() || {}).token || null,
    forget: () => sessionStorage.removeItem(SESSION),
    beforeCall: () => (read(SESSION) && !current() ? startLogin(settings, location.hash) : null),
    unauthorized: () => askToLogIn(settings),
    signOutLabel: "Sign out",
    signOut: () => signOut(settings),
  });
  const params = new URLSearchParams(location.search || "");
  try {
    if (params.has("code") || params.has("error") || params.has("state")) {
      const back = await finishLogin(settings, params);
      if (back) location.hash = back;
      return true;
    }
    if (sessionStorage.getItem(SIGNED_OUT)) { signedOutPage(main, settings, ""); return false; }
    if (!current()) { await startLogin(settings, location.hash); return false; }
  } catch (e) {
    if (!(e instanceof LoginError)) throw e;
    signedOutPage(main, settings, e.message);
    return false;
  }
  return true;
}
