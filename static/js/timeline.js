// Emotion over time: one lane per emotion (its name printed at the left, so colour is not the
// only cue) plus a "no speech" lane; one block per live hop or per file segment.
// The container's data-count holds the number of blocks (tests assert that it grows).

import { EMOTIONS, UNSURE, colorOf, percent, formatSeconds, isUncertain } from './emotions.js';

const SILENCE = 'no speech';  // lane and label of hops without speech
const SPAN_STEP_S = 5;  // a live timeline's axis grows in 5 s steps

export class Timeline {
  // minSpan: seconds the axis shows at least (live: 10 s; a file: its duration).
  constructor(container, { minSpan = 10, emptyText = '' } = {}) {
    this.container = container;
    this.minSpan = minSpan;
    this.count = 0;
    this.end = 0;
    this.tracks = {};
    const lanes = [...EMOTIONS, SILENCE].map((label) => this.lane(label));
    this.axis = document.createElement('div');
    this.axis.className = 'tl-axis';
    this.axis.setAttribute('aria-hidden', 'true');
    this.empty = document.createElement('p');
    this.empty.className = 'tl-empty';
    this.empty.textContent = emptyText;
    this.gaps = document.createElement('div');
    this.gaps.className = 'tl-gaps';
    this.gaps.setAttribute('aria-hidden', 'true');
    this.gapCount = 0;
    container.classList.add('timeline');
    container.replaceChildren(this.gaps, ...lanes, this.axis, this.empty);
    this.setSpan(minSpan);
    this.updateCount();
  }

  lane(label) {
    const lane = document.createElement('div');
    lane.className = 'tl-lane';
    lane.dataset.label = label;
    const name = document.createElement('span');
    name.className = 'tl-name';
    name.textContent = label;
    const track = document.createElement('div');
    track.className = 'tl-track';
    this.tracks[label] = track;
    lane.append(name, track);
    return lane;
  }

  // entry: {start, end, speech, label, confidence, uncertain?}; an uncertain label's block is greyed.
  add(entry) {
    const label = entry.speech && entry.label ? entry.label : SILENCE;
    const block = document.createElement('span');
    block.className = 'tl-block';
    block.style.setProperty('--t0', entry.start.toFixed(3));
    block.style.setProperty('--dt', Math.max(entry.end - entry.start, 0.01).toFixed(3));
    block.style.setProperty('--c', colorOf(label === SILENCE ? null : label));
    const unsure = label !== SILENCE && isUncertain(entry);
    block.classList.toggle('is-uncertain', unsure);
    const what = label === SILENCE ? SILENCE
      : `${label}${entry.confidence != null ? ` ${percent(entry.confidence)}` : ''}${unsure ? ` · ${UNSURE}` : ''}`;
    block.title = `${formatSeconds(entry.start)}–${formatSeconds(entry.end)}: ${what}`;
    this.tracks[label].append(block);
    this.count += 1;
    this.end = Math.max(this.end, entry.end);
    const span = Math.max(this.minSpan, Math.ceil(this.end / SPAN_STEP_S) * SPAN_STEP_S);
    if (span !== this.span) this.setSpan(span);
    this.updateCount();
  }

  // A stretch that was not analysed (the connection was lost): a hatched band across every lane.
  addGap({ start, end }) {
    const band = document.createElement('span');
    band.className = 'tl-gap';
    band.style.setProperty('--t0', start.toFixed(3));
    band.style.setProperty('--dt', Math.max(end - start, 0.05).toFixed(3));
    band.title = `${formatSeconds(start)}–${formatSeconds(end)}: not analysed (connection lost)`;
    this.gaps.append(band);
    this.gapCount += 1;
    this.container.dataset.gaps = String(this.gapCount);
    this.end = Math.max(this.end, end);
    const span = Math.max(this.minSpan, Math.ceil(this.end / SPAN_STEP_S) * SPAN_STEP_S);
    if (span !== this.span) this.setSpan(span);
  }

  // A whole file's segments at once, on an axis as long as the file.
  setSegments(segments, duration) {
    this.clear();
    this.minSpan = duration || 1;
    this.setSpan(this.minSpan);
    segments.forEach((s) => this.add({ ...s, confidence: s.probabilities && s.label ? s.probabilities[s.label] : null }));
    this.setSpan(Math.max(duration || 0, this.end) || 1);
  }

  clear() {
    Object.values(this.tracks).forEach((track) => track.replaceChildren());
    this.gaps.replaceChildren();
    this.gapCount = 0;
    delete this.container.dataset.gaps;
    this.count = 0;
    this.end = 0;
    this.setSpan(this.minSpan);
    this.updateCount();
  }

  setSpan(span) {
    this.span = span;
    this.container.style.setProperty('--span', span);
    const ticks = [0, span / 2, span].map((t) => {
      const tick = document.createElement('span');
      tick.textContent = `${Number(t.toFixed(1))} s`;
      return tick;
    });
    this.axis.replaceChildren(...ticks);
  }

  updateCount() {
    this.container.dataset.count = String(this.count);
    this.empty.hidden = this.count > 0 || !this.empty.textContent;
  }
}
