// The page's only way to the server: the public HTTP API, with problem+json
// errors turned into exceptions that carry the server's own explanation.

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail ?? problem?.title ?? `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function body(resp) {
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 300) };
  }
}

export async function getJson(path, params = {}, { signal } = {}) {
  const resp = await fetch(path + query(params), {
    signal,
    headers: { Accept: 'application/geo+json, application/json' },
  });
  const data = await body(resp);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** POSTs a GeoJSON body; returns `{status, data}` for 2xx, throws otherwise. */
export async function postGeoJson(path, params, text, token) {
  const headers = { 'Content-Type': 'application/geo+json', Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(path + query(params), { method: 'POST', headers, body: text });
  const data = await body(resp);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return { status: resp.status, data };
}
