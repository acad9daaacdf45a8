// The recorded session: every `emotion` event kept in order, exportable as CSV or JSON.

import { EMOTIONS } from './emotions.js';

const CSV_COLUMNS = ['t0', 't1', 'speech', 'label', 'confidence', ...EMOTIONS];

function csvCell(value) {
  if (value == null) return '';
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function saveFile(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export class Session {
  constructor() {
    this.events = [];
    this.gaps = [];  // {start, end}: stretches the server did not analyse (the connection was lost)
    this.summary = null;
    this.startedAt = new Date();
  }

  add(event) {
    this.events.push(event);
  }

  addGap(gap) {
    this.gaps.push(gap);
  }

  // A summary in the server's shape from the events received (used when the recording spans several
  // server sessions): mean of the speech hops' probabilities.
  localSummary(duration) {
    const speech = this.events.filter((e) => e.speech && e.probabilities);
    if (!speech.length) return { duration, label: null, probabilities: null, speech_detected: false, segments: [] };
    const probabilities = Object.fromEntries(EMOTIONS.map((k) => [k, speech.reduce((sum, e) => sum + e.probabilities[k], 0) / speech.length]));
    const label = EMOTIONS.reduce((best, k) => (probabilities[k] > probabilities[best] ? k : best), EMOTIONS[0]);
    return { duration, label, confidence: probabilities[label], probabilities, speech_detected: true, segments: [],
      gaps: this.gaps, computed_in_page: true };
  }

  toCSV() {
    const rows = this.events.map((e) => {
      const probs = e.probabilities || {};
      return [e.t0, e.t1, e.speech, e.label, e.confidence, ...EMOTIONS.map((k) => probs[k])].map(csvCell).join(',');
    });
    return [CSV_COLUMNS.join(','), ...rows].join('\n') + '\n';
  }

  toJSON() {
    return JSON.stringify({ started: this.startedAt.toISOString(), summary: this.summary, gaps: this.gaps,
      events: this.events }, null, 2);
  }

  fileStem() {
    return `emotions-${this.startedAt.toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  }

  downloadCSV() {
    saveFile(`${this.fileStem()}.csv`, this.toCSV(), 'text/csv');
  }

  downloadJSON() {
    saveFile(`${this.fileStem()}.json`, this.toJSON(), 'application/json');
  }
}
