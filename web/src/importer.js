// Importing an observation batch: the file is checked with a dry run first,
// the report lists every rejected feature with its field and reason, and only
// a confirmation stores anything.
import { ApiError, postGeoJson } from './api.js';
import { count, el, fill } from './dom.js';

/** Files larger than this are refused in the page; the CLI streams big batches. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

function counts(report) {
  const rows = [
    ['Features', report.features],
    ['Accepted', report.accepted],
    ['Rejected', report.rejected],
    ['Duplicates', report.duplicates],
    ['Matched to a site', report.matched],
    ['Unmatched', report.unmatched],
    ['Candidate sites created', report.candidates_created?.length ?? 0],
  ];
  return el('table', { class: 'counts' },
    el('tbody', {}, rows.map(([label, n]) =>
      el('tr', {}, el('th', { scope: 'row' }, label), el('td', { dataset: { count: label } }, String(n ?? 0))))));
}

function problems(report) {
  const list = report.problems ?? [];
  if (!list.length) return null;
  return el('div', { class: 'problems' },
    el('h3', {}, `Rejected features (${list.length})`),
    el('table', { class: 'problem-table' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Feature'), el('th', { scope: 'col' }, 'Field'), el('th', { scope: 'col' }, 'Reason'))),
      el('tbody', {}, list.map((p) =>
        el('tr', { class: 'problem' }, el('td', {}, `#${p.index}`), el('td', {}, el('code', {}, p.field)), el('td', {}, p.reason))))),
    report.lists_truncated ? el('p', { class: 'hint' }, 'The server shortened this list; the batch log has the rest.') : null);
}

function duplicates(report) {
  const list = report.duplicate_features ?? [];
  if (!list.length) return null;
  return el('details', { class: 'duplicates' },
    el('summary', {}, `Already imported (${list.length})`),
    el('ul', {}, list.map((d) => el('li', {}, `#${d.index} ${d.external_id}`, d.source ? ` (${d.source})` : ''))));
}

export class Importer {
  constructor(app) {
    this.app = app;
    this.dialog = document.getElementById('import-dialog');
    this.report = document.getElementById('import-report');
    this.confirm = document.getElementById('import-confirm');
    this.file = document.getElementById('import-file');
    this.tokenRow = document.getElementById('import-token-row');
    this.token = document.getElementById('import-token');
    this.drop = document.getElementById('import-drop');
    this.overlay = document.getElementById('drop-overlay');
    this.text = null;
    this.name = null;
    this.mode = null;

    document.getElementById('import-open').addEventListener('click', () => this.open());
    document.getElementById('import-cancel').addEventListener('click', () => this.dialog.close());
    this.dialog.addEventListener('close', () => this.reset());
    this.file.addEventListener('change', () => {
      if (this.file.files[0]) this.check(this.file.files[0]);
    });
    this.confirm.addEventListener('click', () => (this.mode === 'recheck' ? this.check(null) : this.store()));

    // The whole page takes a dropped file, not only the dialog's zone.
    let depth = 0;
    const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
    window.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      depth += 1;
      this.overlay.hidden = false;
    });
    window.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) this.overlay.hidden = true;
    });
    window.addEventListener('dragover', (e) => {
      if (hasFiles(e)) e.preventDefault();
    });
    window.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      this.overlay.hidden = true;
      const file = e.dataTransfer.files[0];
      if (file) {
        this.open();
        this.check(file);
      }
    });
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
  }

  reset() {
    this.text = null;
    this.mode = null;
    this.file.value = '';
    this.confirm.hidden = true;
    this.drop.hidden = false;
    document.getElementById('import-cancel').textContent = 'Cancel';
    fill(this.report);
  }

  message(kind, ...text) {
    fill(this.report, el('p', { class: kind }, ...text));
  }

  /** Dry-runs a file (or, with `null`, the file already read, e.g. after a token was entered). */
  async check(file) {
    this.confirm.hidden = true;
    this.mode = null;
    if (file) {
      if (file.size > MAX_FILE_BYTES) {
        this.message('error', `${file.name} is larger than 64 MB; import it with the command line instead.`);
        return;
      }
      this.name = file.name;
      this.text = await file.text();
    }
    if (!this.text) return;
    this.message('hint', `Checking ${this.name}…`);
    let answer;
    try {
      // A partial dry run reports every feature either way, and stores nothing.
      answer = await postGeoJson('/api/observations', { dry_run: 'true', mode: 'partial' }, this.text, this.token.value);
    } catch (e) {
      this.failed(e);
      return;
    }
    const report = answer.data;
    const already = report.already_imported_as;
    fill(this.report,
      el('h3', {}, `Check of ${this.name}: nothing stored yet`),
      el('p', { class: 'summary', dataset: { stage: 'dry-run' } }, report.summary ?? ''),
      counts(report),
      problems(report),
      duplicates(report),
      already ? el('p', { class: 'hint' }, `This file was already imported as batch ${already}.`) : null);
    this.drop.hidden = true;
    if (report.accepted > 0 && !already) {
      this.mode = report.rejected > 0 ? 'partial' : 'atomic';
      this.confirm.textContent = report.rejected > 0
        ? `Import the ${count(report.accepted, 'valid observation')}, skip ${report.rejected}`
        : `Import ${count(report.accepted, 'observation')}`;
      this.confirm.hidden = false;
      this.confirm.focus();
    } else {
      this.report.append(el('p', { class: 'hint' }, 'There is nothing in this file to import.'));
    }
  }

  async store() {
    if (!this.text || !this.mode) return;
    this.confirm.hidden = true;
    let answer;
    try {
      answer = await postGeoJson('/api/observations', { mode: this.mode }, this.text, this.token.value);
    } catch (e) {
      this.failed(e);
      return;
    }
    const report = answer.data;
    this.text = null;
    fill(this.report,
      el('h3', {}, report.stored ? `Imported ${this.name}` : `${this.name} was not stored`),
      el('p', { class: 'summary', dataset: { stage: 'stored' } }, report.summary ?? ''),
      report.batch_id ? el('p', { class: 'hint' }, 'Batch ', el('code', {}, report.batch_id)) : null,
      counts(report),
      problems(report),
      duplicates(report));
    document.getElementById('import-cancel').textContent = 'Done';
    this.app.dataChanged();
  }

  failed(e) {
    if (e instanceof ApiError && e.status === 401 && this.text) {
      this.tokenRow.hidden = false;
      this.message('error', `${e.message}. Enter the server's write token, then check again.`);
      this.mode = 'recheck';
      this.confirm.textContent = 'Check again';
      this.confirm.hidden = false;
      this.token.focus();
      return;
    }
    const report = e instanceof ApiError ? e.problem?.report : null;
    fill(this.report, el('p', { class: 'error' }, `Not imported: ${e.message}`), report ? problems(report) : null);
  }
}
