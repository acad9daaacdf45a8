// The upload panel: play the chosen file, POST it to /api/predict, show label, bars and timeline,
// and scroll the result into view when it arrives.

import { percent, formatSeconds, showLabel } from './emotions.js';
import { renderBars } from './bars.js';
import { Timeline } from './timeline.js';
import { showMessage, showText, clearMessage } from './messages.js';

const STATUS_TEXT = {
  400: 'The file could not be decoded as audio, or it is empty.',
  413: 'The file is too large for the server.',
  415: 'That file is not a supported audio format.',
};

export class UploadPanel {
  // els: {form, input, reference, submit, message, preview, audio, result, label, unsure, confidence, adapted, session,
  //       duration, bars, timeline}; `reference`: optional calm speech of the same voice (field `reference`)
  constructor(els) {
    this.els = els;
    this.objectUrl = null;
    this.timeline = new Timeline(els.timeline, { minSpan: 1 });
    els.input.addEventListener('change', () => this.preview());
    els.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  preview() {
    const file = this.els.input.files[0];
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = file ? URL.createObjectURL(file) : null;
    this.els.audio.src = this.objectUrl || '';
    this.els.preview.hidden = !file;
    this.els.result.hidden = true;
    clearMessage(this.els.message);
  }

  async submit() {
    const { input, submit, message } = this.els;
    const file = input.files[0];
    if (!file) {
      showText(message, 'Choose an audio file first.');
      return;
    }
    clearMessage(message);
    this.els.result.hidden = true;
    submit.disabled = true;
    submit.textContent = 'Analysing…';
    try {
      await this.send(file);
    } finally {
      submit.disabled = false;
      submit.textContent = 'Analyse';
    }
  }

  async send(file) {
    const body = new FormData();
    body.append('file', file, file.name);
    const reference = this.els.reference && this.els.reference.files[0];
    if (reference) body.append('reference', reference, reference.name);
    let response;
    try {
      response = await fetch(this.els.form.action, { method: 'POST', body, headers: { Accept: 'application/json' } });
    } catch (err) {
      showMessage(this.els.message, 'unreachable');
      return;
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok || !data) {
      const text = (data && data.error) || STATUS_TEXT[response.status] || `The server answered ${response.status}.`;
      showText(this.els.message, text);
      return;
    }
    this.show(data);
  }

  show(data) {
    const { label, unsure, confidence, duration, result } = this.els;
    showLabel(label, unsure, data, 'no speech found');
    confidence.textContent = data.label ? `${percent(data.confidence)} confidence` : '';
    duration.textContent = formatSeconds(data.duration);
    if (this.els.adapted) this.els.adapted.hidden = data.adapted !== true;
    if (this.els.session) this.els.session.hidden = data.session !== true;
    renderBars(this.els.bars, data.label ? data.probabilities : null,
      'No speech was found in this file, so there are no probabilities to show.');
    this.timeline.setSegments(data.segments || [], data.duration);
    result.hidden = false;
    const still = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    result.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
  }
}
