// The time slider: one step per day from the first event on record to today.
// The last step is "now", the live catalogue; any other shows the catalogue as
// recorded at the end of that day and the observations made up to it.

const DAY_MS = 86_400_000;

function dayNumber(date) {
  return Math.round(Date.parse(`${date}T00:00:00Z`) / DAY_MS);
}

function dateOf(day) {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

export function endOfDay(date) {
  return `${date}T23:59:59.999999Z`;
}

export class TimeBar {
  constructor(app) {
    this.app = app;
    this.slider = document.getElementById('time-slider');
    this.label = document.getElementById('time-label');
    this.play = document.getElementById('time-play');
    this.nowButton = document.getElementById('time-now');
    this.first = null;
    this.today = null;
    this.recordFirstDay = null;
    this.timer = null;
    this.slider.addEventListener('input', () => this.moved());
    this.play.addEventListener('click', () => (this.timer ? this.stop() : this.start()));
    this.nowButton.addEventListener('click', () => {
      this.stop();
      this.slider.value = this.slider.max;
      this.moved();
    });
  }

  /** Sets the span from `/api/map/timeline` and places the slider at `date`. */
  setSpan(timeline, date) {
    this.first = dayNumber(timeline.first_day);
    this.today = dayNumber(timeline.today);
    this.recordFirstDay = timeline.record_first_day;
    this.slider.min = '0';
    this.slider.max = String(Math.max(0, this.today - this.first));
    const day = date ? dayNumber(date) : this.today;
    this.slider.value = String(Math.min(Math.max(day - this.first, 0), this.today - this.first));
    for (const c of [this.slider, this.play, this.nowButton]) c.disabled = false;
    this.render();
  }

  /** The day shown, or null for now. */
  date() {
    if (this.first === null) return this.app.state.date;
    const day = this.first + Number(this.slider.value);
    return day >= this.today ? null : dateOf(day);
  }

  /**
   * The `as_of` for catalogue reads. Before the catalogue's first recorded
   * day there are no sites on record; the map then shows them as first
   * recorded, and says so, rather than an empty map.
   */
  catalogueAsOf() {
    const date = this.date();
    if (!date) return null;
    if (this.recordFirstDay && date < this.recordFirstDay) return endOfDay(this.recordFirstDay);
    return endOfDay(date);
  }

  /** The `until` for observations. */
  observationsUntil() {
    const date = this.date();
    return date ? endOfDay(date) : null;
  }

  render() {
    const date = this.date();
    const slider = this.slider;
    if (!date) {
      this.label.textContent = 'Now: the live catalogue';
      slider.setAttribute('aria-valuetext', 'now');
    } else {
      const early = this.recordFirstDay && date < this.recordFirstDay;
      this.label.textContent = early
        ? `${date} (the catalogue's record starts ${this.recordFirstDay}: sites as first recorded)`
        : `${date}: catalogue as recorded then`;
      slider.setAttribute('aria-valuetext', date);
    }
  }

  moved() {
    this.render();
    this.app.dateChanged(this.date());
  }

  start() {
    if (Number(this.slider.value) >= Number(this.slider.max)) this.slider.value = '0';
    // About eighty steps from start to end, whatever the span.
    const step = Math.max(1, Math.round(Number(this.slider.max) / 80));
    this.play.textContent = 'Pause';
    this.play.setAttribute('aria-pressed', 'true');
    const tick = () => {
      const next = Math.min(Number(this.slider.value) + step, Number(this.slider.max));
      this.slider.value = String(next);
      this.moved();
      if (next >= Number(this.slider.max)) this.stop();
    };
    tick();
    this.timer = setInterval(tick, 700);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.play.textContent = 'Play';
    this.play.setAttribute('aria-pressed', 'false');
  }
}
