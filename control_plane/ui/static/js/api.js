// The Kestra API as Squall serves it (tenant "main"). The bearer token is asked for once, on the
// first 401, and kept in sessionStorage: it is gone when the tab closes, and never in a cookie
// (no CSRF surface). With `squall server --no-auth` no token is ever asked for. In AWS the
// login is OIDC (oidc.js), which replaces this prompt through useAuth().
export const TENANT = "main";
const KEY = "squall.token";
export const BASE = new URL("../api/v1/", document.baseURI).pathname;

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let asking = null;

// How requests are authenticated: the token prompt below, or another login (useAuth).
let auth = {
  token: () => sessionStorage.getItem(KEY),
  forget: () => sessionStorage.removeItem(KEY),
  beforeCall: () => null,
  unauthorized: () => askToken(),
  signOutLabel: "Forget token",
  signOut: () => { sessionStorage.removeItem(KEY); location.reload(); },
};

export function useAuth(other) {
  auth = other;
}

export function authMode() {
  return auth;
}

export function token() {
  return auth.token();
}

export function forgetToken() {
  auth.forget();
}

function askToken() {
  // One dialog for every request that got a 401 at the same time.
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.innerHTML = `<form method="dialog" class="form-grid">
      <h2>API token</h2>
      <p>This Squall server wants the token it printed at start (or <code>--token</code>).</p>
      <label>Token <input type="password" name="token" required autocomplete="off"></label>
      <button type="submit">Use token</button></form>`;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const value = dialog.querySelector("input").value.trim();
      dialog.remove();
      asking = null;
      if (value) sessionStorage.setItem(KEY, value);
      resolve(Boolean(value));
    });
    dialog.showModal();
  });
  return asking;
}

export function path(rest) {
  return `${BASE}${TENANT}/${rest}`;
}

// fetch with the token; a 401 asks for it once and retries.
export async function call(rest, options = {}, retried = false) {
  await auth.beforeCall();
  const headers = new Headers(options.headers || {});
  const t = token();
  if (t) headers.set("Authorization", `Bearer ${t}`);
  const response = await fetch(rest.startsWith("/") ? rest : path(rest), { ...options, headers });
  if (response.status === 401 && !retried) {
    forgetToken();
    if (await auth.unauthorized()) return call(rest, options, true);
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    const detail = body && body._embedded && body._embedded.errors
      ? body._embedded.errors.map((e) => e.message).filter(Boolean).join("; ") : "";
    throw new ApiError(response.status, (body && body.message) || detail || response.statusText, body);
  }
  return response;
}

export async function json(rest, options) {
  const response = await call(rest, options);
  const text = await response.text(); // 202 and 204 may come without a body
  return text ? JSON.parse(text) : null;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) q.append(key, value);
  const text = q.toString();
  return text ? `?${text}` : "";
}

export const enc = encodeURIComponent;
