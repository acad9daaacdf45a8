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
    this.summary = null;
    this.startedAt = new Date();
  }

  add(event) {
    this.events.push(event);
  }

  toCSV() {
    const rows = this.events.map((e) => {
      const probs = e.probabilities || {};
      return [e.t0, e.t1, e.speech, e.label, e.confidence, ...EMOTIONS.map((k) => probs[k])].map(csvCell).join(',');
    });
    return [CSV_COLUMNS.join(','), ...rows].join('\n') + '\n';
  }

  toJSON() {
    return JSON.stringify({ started: this.startedAt.toISOString(), summary: this.summary, events: this.events }, null, 2);
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
