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
let pageSize = 1000; // smaller when the hub allows less (hub.max_limit)

export async function entitiesOfType(type) {
  const out = [];
  for (let offset = 0; ; ) {
    const limit = pageSize;
    const q = new URLSearchParams({ type, options: "keyValues", limit, offset });
    let fc;
    try {
      fc = await json(`${NGSI}/entities?${q}`, { accept: "application/geo+json" });
    } catch (err) {
      if (err.status === 403 && pageSize > 20) {
        pageSize = Math.max(20, Math.floor(pageSize / 5));
        continue;
      }
      throw err;
    }
    offset += limit;
    for (const f of fc.features || []) {
      const e = { ...f.properties, id: f.id };
      if (f.geometry) e.location = f.geometry;
      out.push(e);
    }
    if (!fc.features || fc.features.length < limit) return out;
  }
}
