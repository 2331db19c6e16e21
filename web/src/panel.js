// The site panel: a site's attributes, its sources as links, and its history
// (revisions with what changed, observations with finding, sensor and date).
// Candidates and observations without a site get a smaller panel of their own.
import { getJson } from './api.js';
import { count, el, externalLink, fill, when, words } from './dom.js';

function badge(kind, value) {
  return el('span', { class: `badge badge-${kind}`, dataset: { value } }, words(value));
}

/** What each position quality tells an analyst about where the site is. */
const POSITION_QUALITY = {
  verified: 'verified: two independent sources agree within 2 km',
  single_source: 'single source: one source, not cross-checked',
  unverified: 'unverified: its source could not be confirmed',
  approximate: 'approximate: a town or a placeholder, not the facility',
  unknown: 'not assessed',
};

function row(label, ...value) {
  return [el('dt', {}, label), el('dd', {}, ...value)];
}

/** A diff value in a line: text as it is, anything else as short JSON. */
function shown(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

function revisionItem(p) {
  const diff = (p.diff ?? []).map((d) =>
    el('li', {}, el('span', { class: 'field' }, d.field), ': ',
      d.field === 'geometry'
        ? 'footprint redrawn'
        : [el('del', {}, shown(d.old)), ' → ', el('ins', {}, shown(d.new))]),
  );
  return [
    el('p', { class: 'event-head' }, el('strong', {}, `Revision ${p.revision}: ${words(p.change)}`),
      p.actor ? ` by ${p.actor}` : ''),
    p.reason ? el('p', { class: 'event-reason' }, `Reason: ${p.reason}`) : null,
    diff.length ? el('ul', { class: 'diff' }, diff) : null,
  ];
}

function observationItem(p) {
  return [
    el('p', { class: 'event-head' }, el('strong', {}, `Observation: ${words(p.finding)}`),
      p.sensor ? ` (${p.sensor})` : ''),
    p.description ? el('p', { class: 'event-text' }, p.description) : null,
    p.source ? el('p', { class: 'event-source' }, `Source: ${p.source}`) : null,
  ];
}

export class SitePanel {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById('site-panel');
    this.request = 0;
  }

  close() {
    this.request += 1;
    this.root.hidden = true;
    fill(this.root);
  }

  header(title, onZoom) {
    return el('div', { class: 'panel-head' },
      el('h2', { id: 'site-title', tabindex: '-1' }, title),
      el('div', { class: 'row' },
        onZoom ? el('button', { type: 'button', class: 'button', onclick: onZoom }, 'Zoom to') : null,
        el('button', {
          type: 'button',
          class: 'button',
          'aria-label': 'Close the panel',
          onclick: () => this.app.selectSite(null),
        }, 'Close')));
  }

  /** Shows a site: as recorded at the slider's date when one is set. */
  async showSite(id) {
    const ticket = ++this.request;
    this.root.hidden = false;
    fill(this.root, el('p', { class: 'hint' }, 'Loading the site…'));
    const asOf = this.app.time.catalogueAsOf();
    const params = asOf ? { as_of: asOf, include_retired: 'true' } : { include_retired: 'true' };
    let site;
    let history;
    try {
      [site, history] = await Promise.all([
        getJson(`/api/collections/sites/items/${encodeURIComponent(id)}`, params),
        getJson(`/api/sites/${encodeURIComponent(id)}/history?order=newest&limit=500`),
      ]);
    } catch (e) {
      if (ticket !== this.request) return;
      const why = e.status === 404 && asOf
        ? `${id} is not in the catalogue as recorded on ${asOf.slice(0, 10)}.`
        : e.message;
      fill(this.root, this.header('Site not shown'), el('p', { class: 'error' }, why));
      return;
    }
    if (ticket !== this.request) return;
    this.render(site, history, asOf);
    this.app.siteShown(site);
  }

  render(site, history, asOf) {
    const p = site.properties;
    const attrs = el('dl', { class: 'attrs' },
      row('Declaration', badge('declaration', p.declaration)),
      row('Kind', words(p.kind)),
      row('Status', words(p.status)),
      row('Confidence', words(p.confidence)),
      row('Position', el('span', { class: 'position-quality', dataset: { value: p.position_quality ?? 'unknown' } },
        POSITION_QUALITY[p.position_quality] ?? POSITION_QUALITY.unknown)),
      row('Country', p.country),
      row('Id', el('code', {}, p.id)),
      p.alt_names?.length ? row('Also known as', p.alt_names.join('; ')) : null,
      p.observation_count !== undefined ? row('Observations', String(p.observation_count)) : null,
      p.last_observed_at ? row('Last observed', when(p.last_observed_at)) : null,
      p.retired ? row('Record', 'retired') : null,
    );
    const sources = (p.sources ?? []).map((s) =>
      el('li', {}, externalLink(s.title, s.url), s.date ? ` (${s.date})` : ''));
    const events = history.features ?? [];
    const shownUntil = this.app.time.observationsUntil();
    const items = events.map((e) => {
      const ep = e.properties;
      const later = shownUntil && ep.time > shownUntil;
      return el('li', {
        class: `event event-${ep.event}${later ? ' later' : ''}`,
        dataset: { event: ep.event },
      },
      el('time', { datetime: ep.time }, when(ep.time)),
      later ? el('span', { class: 'later-note' }, ' after the date shown') : null,
      ep.event === 'revision' ? revisionItem(ep) : observationItem(ep));
    });
    fill(this.root,
      this.header(p.name, () => this.app.zoomToFeature(site)),
      asOf ? el('p', { class: 'hint' }, `As recorded ${asOf.slice(0, 10)}.`) : null,
      attrs,
      p.notes ? el('p', { class: 'notes' }, p.notes) : null,
      el('h3', {}, 'Sources'),
      sources.length ? el('ul', { class: 'sources' }, sources) : el('p', { class: 'hint' }, 'No sources recorded.'),
      el('h3', {}, `History (${history.links?.some((l) => l.rel === 'next') ? 'latest ' : ''}${count(events.length, 'event')}, newest first)`),
      items.length ? el('ol', { class: 'timeline' }, items) : el('p', { class: 'hint' }, 'No events.'),
    );
  }

  /** A candidate undeclared site from the candidates layer. */
  showCandidate(feature) {
    this.request += 1;
    const p = feature.getProperties();
    this.root.hidden = false;
    fill(this.root,
      this.header('Candidate undeclared site'),
      el('dl', { class: 'attrs' },
        row('State', p.state),
        row('Observations', String(p.observation_count ?? '')),
        row('First observed', when(p.first_observed_at)),
        row('Last observed', when(p.last_observed_at)),
        row('Created', when(p.created_at)),
        row('Id', el('code', {}, p.id)),
      ),
      p.note ? el('p', { class: 'notes' }, p.note) : null,
      el('p', { class: 'hint' }, 'Unmatched observations close together on different days formed this candidate.'),
    );
  }

  /** An observation that is not linked to any site. */
  showObservation(feature) {
    this.request += 1;
    const p = feature.getProperties();
    this.root.hidden = false;
    fill(this.root,
      this.header('Observation'),
      el('dl', { class: 'attrs' },
        row('Finding', words(p.finding)),
        row('Sensor', p.sensor ?? ''),
        row('Observed', when(p.observed_at)),
        row('Confidence', words(p.confidence)),
        p.candidate_id ? row('Candidate', el('code', {}, p.candidate_id)) : null,
      ),
      p.description ? el('p', { class: 'notes' }, p.description) : null,
      p.source ? el('p', { class: 'hint' }, `Source: ${p.source}`) : null,
    );
  }

  focus() {
    document.getElementById('site-title')?.focus({ preventScroll: false });
  }
}
