// The platform's public HTTP APIs, called with the session cookie and the tenant header.
import { config } from "./i18n.js";

export const NGSI = "/ngsi-ld/v1";

export async function api(path, { accept = "application/json", ...init } = {}) {
  const headers = { Accept: accept, "NGSILD-Tenant": config.tenant, ...(init.headers || {}) };
  const resp = await fetch(path, { credentials: "same-origin", ...init, headers });
  if (resp.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
    throw new Error("signed out");
  }
  if (!resp.ok && resp.status !== 206) {
    let detail = resp.statusText;
    try {
      detail = (await resp.json()).detail || detail;
    } catch {
      /* not a problem body */
    }
    const err = new Error(`${resp.status} ${detail}`);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

export async function json(path, opts) {
  return (await api(path, opts)).json();
}

// every entity of one type as keyValues objects with `location` (pages of 1000)
export async function entitiesOfType(type) {
  const out = [];
  const limit = 1000;
  for (let offset = 0; ; offset += limit) {
    const q = new URLSearchParams({ type, options: "keyValues", limit, offset });
    const fc = await json(`${NGSI}/entities?${q}`, { accept: "application/geo+json" });
    for (const f of fc.features || []) {
      const e = { ...f.properties, id: f.id };
      if (f.geometry) e.location = f.geometry;
      out.push(e);
    }
    if (!fc.features || fc.features.length < limit) return out;
  }
}
