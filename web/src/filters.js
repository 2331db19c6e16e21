// Filters by declaration, kind, status and position quality, and search by name: both narrow
// what the map draws, and search also lists the matches to jump to.
import { getJson } from './api.js';
import { count, el, fill, words } from './dom.js';
import { FILTER_GROUPS } from './permalink.js';

const LABELS = {
  declaration: 'Declaration', kind: 'Kind', status: 'Status', position_quality: 'Position',
};

export class Filters {
  constructor(app, vocabulary) {
    this.app = app;
    this.vocabulary = vocabulary;
    this.root = document.getElementById('filter-groups');
    this.search = document.getElementById('search');
    this.results = document.getElementById('search-results');
    this.boxes = {};
    this.searchTimer = null;
    this.searchTicket = 0;
    for (const group of FILTER_GROUPS) {
      const values = vocabulary[group];
      this.boxes[group] = values.map((value) =>
        el('input', { type: 'checkbox', name: group, value, checked: true, onchange: () => this.changed() }));
      this.root.append(el('fieldset', { class: `filter-group filter-${group}` },
        el('legend', {}, LABELS[group]),
        el('div', { class: 'checks' }, values.map((value, i) =>
          el('label', { class: 'check' },
            this.boxes[group][i],
            group === 'declaration' ? el('span', { class: 'swatch', dataset: { declaration: value } }) : null,
            words(value)))),
        el('div', { class: 'row' },
          el('button', { type: 'button', class: 'link-button', onclick: () => this.setGroup(group, null) }, 'all'),
          el('button', { type: 'button', class: 'link-button', onclick: () => this.setGroup(group, []) }, 'none'))));
    }
    document.getElementById('filters-reset').addEventListener('click', () => {
      for (const group of FILTER_GROUPS) this.setGroup(group, null, false);
      this.search.value = '';
      this.changed();
    });
    this.search.addEventListener('input', () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.changed(), 250);
    });
    document.getElementById('search-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      clearTimeout(this.searchTimer);
      this.changed();
      const first = await this.listMatches();
      if (first) this.app.selectSite(first.id, { zoom: true });
    });
  }

  /** Sets the checkboxes from a permalink's filters and search text. */
  apply(filters, q) {
    for (const group of FILTER_GROUPS) {
      const wanted = filters[group];
      for (const box of this.boxes[group]) box.checked = !wanted || wanted.includes(box.value);
    }
    this.search.value = q ?? '';
  }

  setGroup(group, values, notify = true) {
    for (const box of this.boxes[group]) box.checked = !values || values.includes(box.value);
    if (notify) this.changed();
  }

  /** Each group as `null` (any) or the list checked, which may be empty (none). */
  current() {
    const filters = {};
    for (const group of FILTER_GROUPS) {
      const checked = this.boxes[group].filter((b) => b.checked).map((b) => b.value);
      filters[group] = checked.length === this.boxes[group].length ? null : checked;
    }
    return { filters, q: this.search.value.trim() };
  }

  changed() {
    const { filters, q } = this.current();
    this.app.filtersChanged(filters, q);
    this.listMatches();
  }

  /** Lists the sites whose names match the search; returns the first. */
  async listMatches() {
    const q = this.search.value.trim();
    const ticket = ++this.searchTicket;
    if (!q) {
      this.results.hidden = true;
      fill(this.results);
      return null;
    }
    let answer;
    try {
      answer = await getJson('/api/map/search', { q, limit: 20, as_of: this.app.time.catalogueAsOf() });
    } catch (e) {
      if (ticket === this.searchTicket) fill(this.results, el('p', { class: 'error' }, e.message));
      return null;
    }
    if (ticket !== this.searchTicket) return null;
    this.results.hidden = false;
    const matches = answer.matches ?? [];
    fill(this.results,
      el('h2', {}, `Names matching “${q}”`),
      el('p', { class: 'hint' }, answer.numberMatched > matches.length
        ? `${count(answer.numberMatched, 'site')}; the first ${matches.length} shown`
        : matches.length ? count(matches.length, 'site') : 'No site has a name like that.'),
      el('ul', { class: 'search-list' }, matches.map((m) =>
        el('li', {}, el('button', {
          type: 'button',
          class: 'near-item',
          onclick: () => this.app.selectSite(m.id, { zoom: true }),
        },
        el('span', { class: 'swatch', dataset: { declaration: m.declaration } }),
        el('span', { class: 'near-name' }, m.name),
        m.alt_names?.length ? el('span', { class: 'near-kind' }, m.alt_names.join('; ')) : null)))));
    return matches[0] ?? null;
  }
}
