// The sitewatch map page: the catalogue on a map, what is near a point, the
// record through time, and observation batches imported with a dry run first.
// It talks only to the public HTTP API and asks only for what is in view.
import 'ol/ol.css';
import './style.css';
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import { defaults as defaultControls, ScaleLine } from 'ol/control.js';
import { fromLonLat, toLonLat, transformExtent } from 'ol/proj.js';
import { getJson } from './api.js';
import { count, el, fill, words } from './dom.js';
import {
  basemapLayer, candidatesLayer, geojson, nearLayer, observationsLayer, sitesLayer, tileLayer,
  CANDIDATE_COLOUR, DECLARATION_COLOURS, OBSERVATION_COLOUR,
} from './layers.js';
import { Filters } from './filters.js';
import { Importer } from './importer.js';
import { NearSearch } from './near.js';
import { SitePanel } from './panel.js';
import { emptyState, formatHash, parseHash, FILTER_GROUPS } from './permalink.js';
import { TimeBar } from './time.js';

/** Observations drawn per view; the newest up to the date shown. */
const OBSERVATIONS_PER_VIEW = 500;
const REFRESH_DELAY_MS = 120;

function wrapLon(lon) {
  return ((((lon + 180) % 360) + 360) % 360) - 180;
}

const round = (n) => Number(n.toFixed(6));

/** The view as an RFC 7946 bbox; west > east when it crosses the antimeridian. */
function viewBbox(map) {
  const extent = map.getView().calculateExtent(map.getSize());
  const [w, s, e, n] = transformExtent(extent, 'EPSG:3857', 'EPSG:4326');
  const south = Math.max(-90, s);
  const north = Math.min(90, n);
  if (e - w >= 360) return [-180, round(south), 180, round(north)];
  const west = wrapLon(w);
  let east = west + (e - w);
  if (east > 180) east -= 360;
  return [round(west), round(south), round(east), round(north)];
}

class App {
  constructor() {
    this.state = parseHash(window.location.hash);
    this.statusEl = document.getElementById('status');
    this.noticeEl = document.getElementById('notice');
    this.tooltip = document.getElementById('tooltip');
    this.sitesAbort = null;
    this.observationsAbort = null;
    this.refreshTimer = null;
    this.drawn = { mode: 'sites', count: 0, query: null };
    this.ready = { basemap: false, sites: false };
    this.lastHash = null;
    this.pending = 0;
    this.idleWaiters = [];

    this.sites = sitesLayer(() => this.state.site);
    this.candidates = candidatesLayer();
    this.observations = observationsLayer();
    this.nearShapes = nearLayer();
    const basemap = basemapLayer();
    this.basemap = basemap;
    this.firstRendered = new Promise((resolve) => {
      this.resolveFirstRender = resolve;
    });
    this.view = new View({ center: fromLonLat([0, 20]), zoom: 2, minZoom: 1, maxZoom: 19 });
    this.map = new Map({
      target: 'map',
      layers: [basemap.layer, this.nearShapes.layer, this.sites.layer, this.observations.layer, this.candidates.layer],
      view: this.view,
      controls: defaultControls({ attributionOptions: { collapsible: true, collapsed: false } })
        .extend([new ScaleLine()]),
    });
    basemap.layer.getSource().setAttributions('Outlines © Natural Earth');

    this.panel = new SitePanel(this);
    this.near = new NearSearch(this, this.nearShapes.source);
    this.time = new TimeBar(this);
    this.importer = new Importer(this);
    this.legend();
    this.wireMap();
    this.wireLayout();
  }

  async start() {
    const config = await getJson('/api/map/config');
    performance.mark('sitewatch:config');
    this.config = config;
    if (config.assets !== 'built') this.notice(`This server's map page is incomplete: ${config.assets}`);
    if (config.tiles) this.addTiles(config.tiles);
    this.filters = new Filters(this, config.vocabulary);
    this.filters.apply(this.state.filters, this.state.q);

    if (this.state.centre && this.state.zoom !== null) {
      this.view.setCenter(fromLonLat(this.state.centre));
      this.view.setZoom(this.state.zoom);
    } else if (config.extent) {
      const extent = transformExtent(config.extent, 'EPSG:4326', 'EPSG:3857');
      // The bottom padding keeps sites clear of the legend.
      this.view.fit(extent, { padding: [40, 40, 70, 40], maxZoom: 8, size: this.map.getSize() });
    }
    this.map.on('moveend', () => {
      this.writeHash();
      this.scheduleRefresh();
    });
    // A move in progress is work in flight too: `idle()` waits for its end
    // (and the refresh that follows, counted above, before this decrement).
    this.map.on('movestart', () => {
      if (this.moving) return;
      this.moving = true;
      this.pending += 1;
    });
    this.map.on('moveend', () => {
      if (!this.moving) return;
      this.moving = false;
      this.pending -= 1;
      if (!this.pending) this.settle();
    });
    // A permalink's date needs the record's span (when the catalogue was
    // first recorded) before the first request; otherwise the slider waits
    // for the first drawing, to leave the server to the sites meanwhile.
    if (this.state.date) await this.track(this.loadTimeline());
    else this.firstRendered.then(() => this.track(this.loadTimeline()));
    this.refreshSites();
    this.refreshObservations();
    this.refreshCandidates();
    // The outlines are converted while the server answers for the sites.
    this.track(this.basemap.draw())
      .then(() => performance.mark('sitewatch:outlines-converted'))
      .catch((e) => this.notice(`The outlines could not be loaded: ${e.message}`))
      .finally(() => {
        // Without outlines the sites are still worth showing.
        this.ready.basemap = true;
        this.maybeFirstRender();
      });
    if (this.state.site) this.selectSite(this.state.site);
    if (this.state.near) {
      const { lon, lat, radiusKm } = this.state.near;
      this.near.search(lon, lat, radiusKm);
    }
    window.addEventListener('hashchange', () => this.hashChanged());
  }

  async loadTimeline() {
    try {
      const timeline = await getJson('/api/map/timeline');
      this.time.setSpan(timeline, this.state.date);
    } catch (e) {
      this.notice(`The time slider is unavailable: ${e.message}`);
    }
  }

  addTiles(tiles) {
    const layer = tileLayer(tiles);
    this.map.getLayers().insertAt(1, layer);
    const row = document.getElementById('layer-tiles-row');
    row.hidden = false;
    document.getElementById('layer-tiles').addEventListener('change', (e) => layer.setVisible(e.target.checked));
  }

  legend() {
    const root = document.getElementById('legend');
    const item = (swatch, label) => el('li', {}, swatch, label);
    fill(root,
      el('ul', {},
        Object.keys(DECLARATION_COLOURS).map((d) =>
          item(el('span', { class: 'swatch', dataset: { declaration: d } }), words(d))),
        item(el('span', { class: 'symbol candidate', title: CANDIDATE_COLOUR }), 'candidate'),
        item(el('span', { class: 'symbol observation', title: OBSERVATION_COLOUR }), 'observation'),
        item(el('span', { class: 'symbol cluster' }), 'ring: sites by declaration'),
        item(el('span', { class: 'symbol loose' }), 'dashed: approximate or unverified position')));
  }

  wireLayout() {
    const toggle = document.getElementById('sidebar-toggle');
    const narrow = window.matchMedia('(max-width: 760px)');
    const set = (open) => {
      document.body.classList.toggle('sidebar-closed', !open);
      toggle.setAttribute('aria-expanded', String(open));
      toggle.textContent = open ? 'Hide panel' : 'Show panel';
      this.map.updateSize();
    };
    toggle.addEventListener('click', () => set(document.body.classList.contains('sidebar-closed')));
    set(true);
    narrow.addEventListener('change', () => this.map.updateSize());
    // OpenLayers notices when the map's element changes size, but draws at
    // the new size only on the next animation frame. A frame painted in
    // between shows the old canvas, top-aligned in the resized map: after the
    // window grows, the outlines and sites stop in a straight line short of
    // the map's bottom (a headless screenshot, taken as the viewport is set
    // to its final size, keeps exactly that frame). Drawing here instead, as
    // the browser reports the new size and before it paints, means no frame
    // shows a map drawn for the old size.
    new ResizeObserver(() => {
      this.map.updateSize();
      this.map.renderSync();
    }).observe(this.map.getTargetElement());
    document.getElementById('layer-candidates').addEventListener('change', (e) =>
      this.candidates.layer.setVisible(e.target.checked));
    document.getElementById('layer-observations').addEventListener('change', (e) =>
      this.observations.layer.setVisible(e.target.checked));
  }

  wireMap() {
    const interactive = (layer) => ['sites', 'candidates', 'observations'].includes(layer.get('name'));
    const hitAt = (pixel) => this.map.forEachFeatureAtPixel(pixel, (f, layer) => [f, layer.get('name')], {
      hitTolerance: 4,
      layerFilter: interactive,
    });
    this.map.on('singleclick', (evt) => {
      const hit = hitAt(evt.pixel);
      if (!hit) {
        const [lon, lat] = toLonLat(evt.coordinate);
        const radius = document.getElementById('near-radius').value.trim();
        this.near.search(lon, lat, radius === '' ? null : Number(radius));
        return;
      }
      const [feature, layer] = hit;
      if (layer === 'sites' && feature.get('cluster')) this.zoomToCluster(feature);
      else if (layer === 'sites') this.selectSite(feature.get('id'));
      else if (layer === 'candidates') this.panel.showCandidate(feature);
      else if (feature.get('site_id')) this.selectSite(feature.get('site_id'));
      else this.panel.showObservation(feature);
    });
    this.map.on('pointermove', (evt) => {
      if (evt.dragging) return;
      const hit = hitAt(evt.pixel);
      this.map.getTargetElement().classList.toggle('pointing', Boolean(hit));
      if (!hit) {
        this.tooltip.hidden = true;
        return;
      }
      const [f, layer] = hit;
      let text;
      if (f.get('cluster')) text = `${count(f.get('count'), 'site')}: click to zoom in`;
      else if (layer === 'sites') text = `${f.get('name')} (${words(f.get('declaration'))} ${words(f.get('kind'))})`;
      else if (layer === 'candidates') text = `Candidate undeclared site (${count(f.get('observation_count') ?? 0, 'observation')})`;
      else text = `Observation: ${words(f.get('finding'))}, ${String(f.get('observed_at') ?? '').slice(0, 10)}`;
      this.tooltip.textContent = text;
      this.tooltip.hidden = false;
      this.tooltip.style.left = `${evt.pixel[0] + 12}px`;
      this.tooltip.style.top = `${evt.pixel[1] + 12}px`;
    });
    this.map.getViewport().addEventListener('pointerleave', () => {
      this.tooltip.hidden = true;
    });
  }

  zoomToCluster(feature) {
    const [w, s, e, n] = feature.get('bbox');
    const extent = transformExtent([w, s, e, n], 'EPSG:4326', 'EPSG:3857');
    const zoom = this.view.getZoom();
    this.view.fit(extent, { padding: [60, 60, 60, 60], duration: 300, maxZoom: Math.max(zoom + 2, 8) });
  }

  zoomToFeature(feature) {
    const geometry = geojson.readGeometry(feature.geometry);
    this.view.fit(geometry.getExtent(), { padding: [80, 80, 80, 80], maxZoom: 14, duration: 400 });
  }

  viewCentre() {
    const [lon, lat] = toLonLat(this.view.getCenter());
    return [wrapLon(lon), lat];
  }

  filterParams() {
    const params = {};
    for (const group of FILTER_GROUPS) {
      const values = this.state.filters[group];
      if (values) params[group] = values.join(',');
    }
    return params;
  }

  /** Whether a filter group has nothing checked, so nothing can match. */
  filtersExcludeAll() {
    return FILTER_GROUPS.some((g) => Array.isArray(this.state.filters[g]) && this.state.filters[g].length === 0);
  }

  /** Counts work in flight, so that `idle()` knows when the page has settled. */
  track(promise) {
    this.pending += 1;
    return promise.finally(() => {
      this.pending -= 1;
      if (!this.pending) this.settle();
    });
  }

  settle() {
    this.map.once('rendercomplete', () => {
      if (this.pending) return;
      // An animation ends in a moveend, which refreshes the view again.
      if (this.view.getAnimating() || this.view.getInteracting()) {
        setTimeout(() => this.settle(), 50);
        return;
      }
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    });
    this.map.render();
  }

  /** Resolves once nothing is loading and the map has finished drawing. */
  idle() {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      if (!this.pending) this.settle();
    });
  }

  scheduleRefresh() {
    if (!this.refreshTimer) this.pending += 1;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refreshSites({ ifChanged: true });
      this.refreshObservations({ ifChanged: true });
      this.pending -= 1;
      if (!this.pending) this.settle();
    }, REFRESH_DELAY_MS);
  }

  /** Fetches the sites for the view; with `ifChanged`, only if the query differs from the last. */
  refreshSites({ ifChanged = false } = {}) {
    return this.track(this.loadSites(ifChanged));
  }

  refreshObservations({ ifChanged = false } = {}) {
    return this.track(this.loadObservations(ifChanged));
  }

  refreshCandidates() {
    return this.track(this.loadCandidates());
  }

  async loadSites(ifChanged) {
    const params = {
      bbox: viewBbox(this.map).join(','),
      zoom: Math.max(0, Math.floor(this.view.getZoom())),
      ...this.filterParams(),
      q: this.state.q,
      as_of: this.time.catalogueAsOf(),
    };
    // A moveend that did not move (the first fit, a click) asks for nothing.
    const key = JSON.stringify(params);
    if (ifChanged && key === this.sitesKey) return;
    this.sitesKey = key;
    this.sitesAbort?.abort();
    const abort = new AbortController();
    this.sitesAbort = abort;
    performance.mark('sitewatch:sites-requested');
    let answer;
    if (this.filtersExcludeAll()) {
      answer = { mode: 'sites', numberMatched: 0, features: [] };
    } else {
      try {
        answer = await getJson('/api/map/sites', params, { signal: abort.signal });
      } catch (e) {
        if (e.name !== 'AbortError') {
          this.sitesKey = null;
          this.notice(`Sites could not be loaded: ${e.message}`);
        }
        return;
      }
    }
    if (abort.signal.aborted) return;
    const features = geojson.readFeatures(answer);
    const source = this.sites.source;
    source.clear(true);
    source.addFeatures(features);
    performance.mark('sitewatch:sites-received');
    this.drawn = { mode: answer.mode, count: answer.numberMatched, query: params, features: features.length };
    this.setStatus();
    this.ready.sites = true;
    this.maybeFirstRender();
  }

  async loadObservations(ifChanged) {
    const params = {
      type: 'observation',
      bbox: viewBbox(this.map).join(','),
      until: this.time.observationsUntil(),
      limit: OBSERVATIONS_PER_VIEW,
    };
    const key = JSON.stringify(params);
    if (ifChanged && key === this.observationsKey) return;
    this.observationsKey = key;
    this.observationsAbort?.abort();
    const abort = new AbortController();
    this.observationsAbort = abort;
    let answer;
    try {
      answer = await getJson('/api/changes', params, { signal: abort.signal });
    } catch (e) {
      if (e.name !== 'AbortError') {
        this.observationsKey = null;
        this.notice(`Observations could not be loaded: ${e.message}`);
      }
      return;
    }
    if (abort.signal.aborted) return;
    const source = this.observations.source;
    source.clear(true);
    source.addFeatures(geojson.readFeatures(answer));
    this.observationsShown = answer.features?.length ?? 0;
    this.setStatus();
  }

  async loadCandidates() {
    try {
      const answer = await getJson('/api/candidates', { state: 'open' });
      const source = this.candidates.source;
      source.clear(true);
      source.addFeatures(geojson.readFeatures(answer));
    } catch (e) {
      this.notice(`Candidates could not be loaded: ${e.message}`);
    }
  }

  setStatus() {
    const { mode, count: n } = this.drawn;
    const date = this.time.date();
    const parts = [`${count(n, 'site')} in view`];
    if (mode === 'clusters') parts.push('grouped; zoom in to see each');
    if (this.observationsShown !== undefined) {
      parts.push(count(this.observationsShown, 'observation'));
    }
    if (date) parts.push(`as of ${date}`);
    this.statusEl.textContent = parts.join(' · ');
    this.statusEl.dataset.count = String(n);
    this.statusEl.dataset.mode = mode;
  }

  notice(text) {
    this.noticeEl.textContent = text;
    this.noticeEl.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      this.noticeEl.hidden = true;
    }, 8000);
  }

  /** Marks the first complete drawing of outlines and sites, for timing. */
  maybeFirstRender() {
    if (!this.ready.basemap || !this.ready.sites || window.sitewatch.firstRender) return;
    this.map.once('rendercomplete', () => {
      if (!window.sitewatch.firstRender) {
        window.sitewatch.firstRender = performance.now();
        document.body.dataset.rendered = 'true';
        this.resolveFirstRender();
      }
    });
    this.map.render();
  }

  selectSite(id, { zoom = false } = {}) {
    this.state.site = id;
    this.zoomOnShow = zoom;
    this.sites.layer.changed();
    this.writeHash();
    if (!id) {
      this.panel.close();
      return;
    }
    this.track(this.panel.showSite(id)).then(() => {
      if (zoom) this.panel.focus();
    });
  }

  /** Called by the panel once a site is loaded. */
  siteShown(site) {
    if (this.zoomOnShow) this.zoomToFeature(site);
    this.zoomOnShow = false;
  }

  filtersChanged(filters, q) {
    this.state.filters = filters;
    this.state.q = q;
    this.writeHash();
    this.refreshSites();
    if (this.state.near) {
      const { lon, lat, radiusKm } = this.state.near;
      this.near.search(lon, lat, radiusKm);
    }
  }

  dateChanged(date) {
    this.state.date = date;
    this.writeHash();
    this.refreshSites();
    this.refreshObservations();
    if (this.state.site) this.track(this.panel.showSite(this.state.site));
  }

  /** After an import: everything drawn from observations may have changed. */
  dataChanged() {
    this.refreshSites();
    this.refreshObservations();
    this.refreshCandidates();
    this.track(this.loadTimeline());
    if (this.state.site) this.track(this.panel.showSite(this.state.site));
  }

  writeHash() {
    const centre = this.view.getCenter();
    if (centre) {
      this.state.centre = this.viewCentre();
      this.state.zoom = this.view.getZoom();
    }
    const hash = formatHash(this.state);
    if (hash !== window.location.hash) {
      this.lastHash = hash;
      window.history.replaceState(null, '', hash);
    }
  }

  /** A pasted or edited permalink: apply what differs. */
  hashChanged() {
    if (window.location.hash === this.lastHash) return;
    const next = { ...emptyState(), ...parseHash(window.location.hash) };
    if (next.centre && next.zoom !== null) {
      this.view.setCenter(fromLonLat(next.centre));
      this.view.setZoom(next.zoom);
    }
    this.filters.apply(next.filters, next.q);
    this.state.filters = next.filters;
    this.state.q = next.q;
    if (next.date !== this.state.date && this.time.first !== null) {
      this.time.setSpan({
        first_day: new Date(this.time.first * 86_400_000).toISOString().slice(0, 10),
        today: new Date(this.time.today * 86_400_000).toISOString().slice(0, 10),
        record_first_day: this.time.recordFirstDay,
      }, next.date);
      this.state.date = this.time.date();
    }
    if (next.site !== this.state.site) this.selectSite(next.site);
    this.refreshSites();
    this.refreshObservations();
  }
}

// A handle for people debugging the page and for the browser tests: the map,
// when drawing first completed, and how many sites the view holds.
window.sitewatch = { firstRender: null };
const app = new App();
Object.assign(window.sitewatch, {
  app,
  map: app.map,
  /** Sites drawn for the view: each feature, or the counts of its clusters. */
  drawnSiteCount() {
    return app.sites.source.getFeatures().reduce((n, f) => n + (f.get('cluster') ? f.get('count') : 1), 0);
  },
  lastSitesQuery: () => app.drawn.query,
  idle: () => app.idle(),
  /** The pixel of a position on the map, relative to the map element. */
  pixelOf(lon, lat) {
    return app.map.getPixelFromCoordinate(fromLonLat([lon, lat]));
  },
});
app.start().catch((e) => app.notice(`The map could not start: ${e.message}`));
