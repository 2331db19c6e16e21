// The page's state in the URL fragment, so a link or a reload shows the same
// view: `#map=zoom/lat/lon&site=ID&declaration=a,b&kind=&status=&position_quality=&q=&date=&near=lon,lat[,km]`.
// A filter left out means "any"; present but empty means "none".

export const FILTER_GROUPS = ['declaration', 'kind', 'status', 'position_quality'];

export function emptyState() {
  return {
    zoom: null,
    centre: null,
    site: null,
    filters: { declaration: null, kind: null, status: null, position_quality: null },
    q: '',
    date: null,
    near: null,
  };
}

function number(raw) {
  const n = Number(raw);
  return raw !== '' && Number.isFinite(n) ? n : null;
}

/** Reads the state from a fragment; anything unreadable is left at its default. */
export function parseHash(hash) {
  const state = emptyState();
  const p = new URLSearchParams(hash.replace(/^#/, ''));
  const map = (p.get('map') ?? '').split('/').map(number);
  if (map.length === 3 && map.every((n) => n !== null)) {
    const [zoom, lat, lon] = map;
    if (zoom >= 0 && zoom <= 28 && Math.abs(lat) <= 90 && Math.abs(lon) <= 540) {
      state.zoom = zoom;
      state.centre = [lon, lat];
    }
  }
  state.site = p.get('site') || null;
  for (const group of FILTER_GROUPS) {
    if (p.has(group)) state.filters[group] = p.get(group).split(',').filter(Boolean);
  }
  state.q = p.get('q') ?? '';
  const date = p.get('date');
  if (date && /^\d{4}-\d{2}-\d{2}$/.test(date)) state.date = date;
  const near = (p.get('near') ?? '').split(',').map(number);
  if (near.length >= 2 && near[0] !== null && near[1] !== null) {
    state.near = { lon: near[0], lat: near[1], radiusKm: near[2] ?? null };
  }
  return state;
}

const fixed = (n, digits) => Number(n.toFixed(digits)).toString();

export function formatHash(state) {
  const parts = [];
  if (state.zoom !== null && state.centre) {
    const [lon, lat] = state.centre;
    parts.push(['map', `${fixed(state.zoom, 2)}/${fixed(lat, 5)}/${fixed(lon, 5)}`]);
  }
  if (state.site) parts.push(['site', state.site]);
  for (const group of FILTER_GROUPS) {
    const values = state.filters[group];
    if (values) parts.push([group, values.join(',')]);
  }
  if (state.q) parts.push(['q', state.q]);
  if (state.date) parts.push(['date', state.date]);
  if (state.near) {
    const { lon, lat, radiusKm } = state.near;
    const near = [fixed(lon, 5), fixed(lat, 5)];
    if (radiusKm !== null) near.push(fixed(radiusKm, 3));
    parts.push(['near', near.join(',')]);
  }
  // URLSearchParams would turn the separators into %2C and %2F; they are safe
  // in a fragment and easier to read.
  return `#${parts
    .map(([k, v]) => `${k}=${encodeURIComponent(v).replace(/%2C/g, ',').replace(/%2F/g, '/')}`)
    .join('&')}`;
}
