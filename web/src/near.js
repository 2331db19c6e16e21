// "What is near": the sites nearest a clicked or typed position, listed with
// geodesic distances in km, with the search radius drawn on the map.
import Feature from 'ol/Feature.js';
import Point from 'ol/geom/Point.js';
import { circular } from 'ol/geom/Polygon.js';
import { fromLonLat } from 'ol/proj.js';
import { getJson } from './api.js';
import { count, el, fill, km, words } from './dom.js';

const NEAREST = 10;
const WITHIN_LIMIT = 50;

export class NearSearch {
  constructor(app, source) {
    this.app = app;
    this.source = source;
    this.form = document.getElementById('near-form');
    this.lon = document.getElementById('near-lon');
    this.lat = document.getElementById('near-lat');
    this.radius = document.getElementById('near-radius');
    this.list = document.getElementById('near-list');
    this.summary = document.getElementById('near-summary');
    this.clearButton = document.getElementById('near-clear');
    this.request = 0;
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const radius = this.radius.value.trim();
      this.search(Number(this.lon.value), Number(this.lat.value), radius === '' ? null : Number(radius));
    });
    document.getElementById('near-centre').addEventListener('click', () => {
      const [lon, lat] = app.viewCentre();
      const radius = this.radius.value.trim();
      this.search(lon, lat, radius === '' ? null : Number(radius));
    });
    this.clearButton.addEventListener('click', () => this.clear());
  }

  clear() {
    this.request += 1;
    this.source.clear();
    fill(this.list);
    this.summary.hidden = true;
    this.clearButton.hidden = true;
    this.app.state.near = null;
    this.app.writeHash();
  }

  /** Lists the sites near `lon, lat`: within `radiusKm`, or the nearest ten. */
  search(lon, lat, radiusKm = null) {
    return this.app.track(this.load(lon, lat, radiusKm));
  }

  async load(lon, lat, radiusKm) {
    if (!Number.isFinite(lon) || !Number.isFinite(lat)) return;
    // Clicks on a wrapped world copy give longitudes past ±180.
    lon = ((((lon + 180) % 360) + 360) % 360) - 180;
    lon = Number(lon.toFixed(6));
    lat = Number(lat.toFixed(6));
    const ticket = ++this.request;
    this.lon.value = String(lon);
    this.lat.value = String(lat);
    this.radius.value = radiusKm === null ? '' : String(radiusKm);
    this.app.state.near = { lon, lat, radiusKm };
    this.app.writeHash();
    const filters = this.app.filterParams();
    const params = radiusKm === null
      ? { lon, lat, limit: NEAREST, ...filters }
      : { lon, lat, radius_m: radiusKm * 1000, limit: WITHIN_LIMIT, ...filters };
    fill(this.summary, 'Searching…');
    this.summary.hidden = false;
    let answer;
    try {
      answer = await getJson('/api/nearby', params);
    } catch (e) {
      if (ticket === this.request) fill(this.summary, el('span', { class: 'error' }, e.message));
      return;
    }
    if (ticket !== this.request) return;
    const hits = answer.features ?? [];
    const farthest = hits.length ? hits[hits.length - 1].properties.distance_m : 0;
    // With no radius the circle reaches the farthest of the nearest sites.
    const drawn = radiusKm !== null ? radiusKm * 1000 : farthest;
    this.draw(lon, lat, drawn);
    const where = `${lat.toFixed(4)}°, ${lon.toFixed(4)}°`;
    fill(this.summary, radiusKm !== null
      ? `${count(hits.length, 'site')} within ${km(radiusKm * 1000)} of ${where}` +
        (hits.length === WITHIN_LIMIT ? ` (the nearest ${WITHIN_LIMIT} shown)` : '')
      : `The ${count(hits.length, 'nearest site')} to ${where}`);
    this.clearButton.hidden = false;
    fill(this.list, hits.map((f, i) => {
      const p = f.properties;
      return el('li', { dataset: { id: p.id, distance: p.distance_m } },
        el('button', {
          type: 'button',
          class: 'near-item',
          onclick: () => this.app.selectSite(p.id, { zoom: true }),
        },
        el('span', { class: 'rank' }, `${i + 1}.`),
        el('span', { class: 'swatch', dataset: { declaration: p.declaration } }),
        el('span', { class: 'near-name' }, p.name),
        el('span', { class: 'near-distance' }, km(p.distance_m)),
        el('span', { class: 'near-kind' }, `${words(p.declaration)} ${words(p.kind)}`)));
    }));
  }

  draw(lon, lat, radiusM) {
    this.source.clear();
    const point = new Feature({ geometry: new Point(fromLonLat([lon, lat])), part: 'point' });
    const features = [point];
    if (radiusM > 0) {
      const circle = circular([lon, lat], radiusM, 128).transform('EPSG:4326', 'EPSG:3857');
      features.push(new Feature({ geometry: circle, part: 'circle' }));
    }
    this.source.addFeatures(features);
  }
}
