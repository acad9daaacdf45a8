// Wires the page: record button -> microphone -> socket -> chart, timeline, summary and replay;
// the upload panel; the Share, "How good is this?" and "Use the API" panels.
// The record button's states: idle -> starting -> recording -> stopping.
// While recording, a lost server session (reconnect, restart, idle timeout) is resumed: the
// microphone keeps going, a new session starts when the server answers, the timeline marks the gap.
// "Adapt to my voice" (a remembered checkbox): each server session, the first one and every resumed
// one, starts with `calibrate_s` and learns the voice again; a model that cannot adapt is told so.

import { Microphone, MicError, TARGET_RATE } from './mic.js';
import { StreamClient, StreamError } from './socket.js';
import { ProbabilityChart } from './chart.js';
import { Timeline } from './timeline.js';
import { Session } from './session.js';
import { renderBars } from './bars.js';
import { UploadPanel } from './upload.js';
import { Recording } from './recording.js';
import { ReplayView } from './replay.js';
import { SharePanel } from './share.js';
import { QualityPanel } from './quality.js';
import { showApiHelp } from './api-help.js';
import { EMOTIONS, percent, formatSeconds, showLabel } from './emotions.js';
import { showMessage, clearMessage, showConnection } from './messages.js';

const LEVEL_FLOOR_DB = -60;  // the meter's empty end
const HOP_MAX_S = 0.5;  // an `emotion` event is new for at most its last 0.5 s (CONTRACTS.md)
const NOTICE_MS = 6000;  // how long a passing notice (server busy) stays
const LEVEL_RELEASE = 0.85;  // per level message (~50 ms): fast attack, slow fall
const RESUME_RETRY_MS = 2000;  // after a refused restart of the server session
// Errors meaning the server no longer holds our session: start a new one and carry on.
const SESSION_LOST = new Set(['not_started', 'idle_timeout']);
// Notices about the recording in progress: cleared at Stop, so nothing stale stays.
const PASSING = new Set(['overloaded', 'interrupted', 'resumed', 'server', 'lost', 'no-adaptation', 'adapt-failed']);
const CALIBRATE_S = 4;  // seconds of speech the server takes as the calm reference of the voice
const ADAPT_KEY = 'ser.adaptVoice';  // localStorage: '1' when "Adapt to my voice" is on
const ADAPT_TEXT = {
  learning: 'Speak calmly for a few seconds: learning your voice…',
  adapted: 'Adapted to your voice',
  failed: 'Not adapted to your voice: carrying on as for any voice.',
  unavailable: 'This model cannot adapt to a voice: carrying on as for any voice.',
};
const LISTENING_TEXT = 'Listening… the probabilities appear with the first half second of speech.';

const byId = (id) => document.getElementById(id);

// The toggle is remembered in localStorage (when the browser allows storage).
function loadAdaptSetting() {
  try {
    return window.localStorage.getItem(ADAPT_KEY) === '1';
  } catch (err) {
    return false;
  }
}

function saveAdaptSetting(on) {
  try {
    window.localStorage.setItem(ADAPT_KEY, on ? '1' : '0');
  } catch (err) { /* storage blocked: not remembered */ }
}

function clock(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

class LivePanel {
  constructor() {
    this.els = {
      panel: byId('live'),
      record: document.querySelector('[data-testid="record"]'),
      recordText: document.querySelector('[data-testid="record"] .record-text'),
      hint: byId('record-hint'),
      message: byId('live-message'),
      adapt: byId('adapt-voice'),
      adaptStatus: byId('adapt-status'),
      adaptedBadge: byId('adapted-badge'),
      sessionBadge: byId('session-badge'),
      banner: byId('connection-banner'),
      pill: byId('connection-pill'),
      meter: byId('level-meter'),
      speech: byId('speech-indicator'),
      current: document.querySelector('[data-testid="current-emotion"]'),
      currentUnsure: byId('current-unsure'),
      confidence: byId('current-confidence'),
      summary: byId('summary'),
      summaryLabel: byId('summary-label'),
      summaryUnsure: byId('summary-unsure'),
      summaryNote: byId('summary-note'),
      summaryDuration: byId('summary-duration'),
      summaryBars: byId('summary-bars'),
    };
    this.state = 'idle';
    this.mic = null;
    this.session = null;
    this.recording = null;
    this.queue = [];
    this.lastEnd = 0;
    this.micSeconds = 0;  // audio captured since Record, in seconds (the timeline's clock)
    this.offset = 0;  // where the server's current session started on that clock
    this.interrupted = null;  // while the server's session is lost: {since} on the clock
    this.resumeTimer = null;
    this.startedAt = 0;
    this.ticker = null;
    this.shown = 0;  // the level meter's current value, 0..1
    this.noticeTimer = null;
    this.chart = new ProbabilityChart(document.querySelector('[data-testid="probability-chart"]'));
    this.idleChartText = byId('chart-empty').textContent;
    this.timeline = new Timeline(document.querySelector('[data-testid="timeline"]'), {
      minSpan: 10,
      emptyText: 'Press Record and speak: a block appears here for every half second analysed.',
    });
    this.replay = new ReplayView({
      box: byId('replay'), audio: byId('replay-audio'), note: byId('replay-note'), download: byId('download-wav'),
    });
    this.client = this.connect();
    this.els.record.addEventListener('click', () => this.toggle());
    this.els.adapt.checked = loadAdaptSetting();
    this.els.adapt.addEventListener('change', () => saveAdaptSetting(this.els.adapt.checked));
    byId('download-csv').addEventListener('click', () => this.session && this.session.downloadCSV());
    byId('download-json').addEventListener('click', () => this.session && this.session.downloadJSON());
    if (!window.isSecureContext) showMessage(this.els.message, 'insecure');
  }

  connect() {
    try {
      return new StreamClient({
        onEmotion: (event) => this.emotion(event),
        onCalibrated: (result) => this.calibrated(result),
        onServerError: (error) => this.serverError(error),
        onConnection: (state) => this.connection(state),
      });
    } catch (err) {
      showMessage(this.els.message, 'no-client');
      showConnection(this.els.banner, this.els.pill, 'closed');
      return null;
    }
  }

  setState(state) {
    this.state = state;
    const { record, hint, panel } = this.els;
    panel.dataset.state = state;
    record.setAttribute('aria-pressed', String(state === 'recording' || state === 'stopping'));
    record.setAttribute('aria-disabled', String(state === 'starting' || state === 'stopping'));
    this.els.recordText.textContent = state === 'recording' || state === 'stopping' ? 'Stop' : 'Record';
    this.els.adapt.disabled = state !== 'idle';  // it applies from the next Record
    hint.textContent = {
      idle: 'Press to start the microphone',
      starting: 'Starting…',
      recording: `Recording ${clock((performance.now() - this.startedAt) / 1000)} · press again to stop`,
      stopping: 'Finishing…',
    }[state];
  }

  toggle() {
    if (this.state === 'idle') this.start();
    else if (this.state === 'recording') this.stop();
  }

  async start() {
    clearMessage(this.els.message);
    if (!window.isSecureContext) return showMessage(this.els.message, 'insecure');
    if (!this.client) return showMessage(this.els.message, 'no-client');
    if (!this.client.connected) return showMessage(this.els.message, 'unreachable');
    this.reset();
    this.setState('starting');
    this.mic = new Microphone({ onFrame: (buffer) => this.frame(buffer), onLevel: (rms) => this.level(rms) });
    try {
      await this.mic.start();
      await this.openSession();
    } catch (err) {
      this.mic.release();
      this.setState('idle');
      this.showAdapt(null);
      this.level(0);
      this.chart.clear(this.idleChartText);
      this.els.confidence.textContent = 'press Record to start';
      if (err instanceof MicError) return showMessage(this.els.message, err.code, err.message);
      if (err instanceof StreamError && err.code === 'unreachable') return showMessage(this.els.message, 'unreachable');
      return showMessage(this.els.message, 'server', err.message);
    }
    if (this.state !== 'starting') return this.mic.release();  // aborted while starting
    this.queue.forEach((buffer) => this.client.send(buffer));
    this.queue = [];
    this.startedAt = performance.now();
    this.setState('recording');
    this.ticker = setInterval(() => this.setState(this.state), 500);
  }

  // Start a server session, with `calibrate_s` when "Adapt to my voice" is on. A model that cannot
  // adapt refuses that (`no_adaptation`, which GET /api/model does not tell): start again without.
  async openSession() {
    const calibrate = this.els.adapt.checked ? CALIBRATE_S : null;
    try {
      await this.client.start(this.mic.sampleRate, calibrate);
    } catch (err) {
      if (!calibrate || !(err instanceof StreamError) || err.code !== 'no_adaptation') throw err;
      await this.client.start(this.mic.sampleRate);
      this.showAdapt('unavailable');
      showMessage(this.els.message, 'no-adaptation');
      return;
    }
    this.showAdapt(calibrate ? 'learning' : null);
  }

  // The status line of "Adapt to my voice": learning, adapted, failed, unavailable; null hides it.
  showAdapt(state, detail) {
    const el = this.els.adaptStatus;
    this.els.adaptedBadge.hidden = true;  // shown again by the next adapted event
    if (!state) {
      el.hidden = true;
      el.textContent = '';
      delete el.dataset.state;
      return;
    }
    el.dataset.state = state;
    el.textContent = state === 'adapted' && detail ? `${ADAPT_TEXT.adapted} (from ${formatSeconds(detail)} of speech)`
      : ADAPT_TEXT[state];
    el.hidden = false;
  }

  // `calibrated`: the server has its reference of the voice (ok), or not (too little speech): go on unadapted.
  calibrated(result) {
    if (this.state !== 'recording' && this.state !== 'stopping') return;
    if (this.interrupted) return;  // a late answer of the lost session
    if (result.ok) return this.showAdapt('adapted', result.speech_s);
    this.showAdapt('failed');
    return showMessage(this.els.message, 'adapt-failed', result.error || 'not enough speech');
  }

  async stop() {
    this.setState('stopping');
    clearInterval(this.ticker);
    clearTimeout(this.resumeTimer);
    await this.mic.stop();  // its last partial frame goes out first
    const gaps = this.session.gaps.length > 0;
    const summary = this.interrupted ? null : await this.client.stop();
    this.interrupted = null;
    clearTimeout(this.noticeTimer);
    if (PASSING.has(this.els.message.dataset.code)) clearMessage(this.els.message);
    // After a reconnect the server's summary covers only its last session: summarise the page's events.
    this.finish(gaps ? this.session.localSummary(this.micSeconds) : summary);
    if (!summary && !gaps) showMessage(this.els.message, 'no-summary');
  }

  // The server's session is gone (connection lost, server restarted, stream closed): keep recording,
  // and open a new session as soon as the server can take it. The timeline shows the gap.
  interrupt() {
    if (this.interrupted) return;
    this.interrupted = { since: this.micSeconds };
    showMessage(this.els.message, 'interrupted');
    if (this.client && this.client.connected) this.resume();
  }

  async resume() {
    clearTimeout(this.resumeTimer);
    if (!this.interrupted || this.state !== 'recording') return;
    try {
      await this.openSession();  // a new stream: with adaptation on, it learns the voice again
    } catch (err) {  // refused (busy) or no answer: try again shortly
      this.resumeTimer = setTimeout(() => this.resume(), RESUME_RETRY_MS);
      return;
    }
    if (!this.interrupted || this.state !== 'recording') return;
    const gap = { start: this.interrupted.since, end: this.micSeconds };
    this.offset = this.micSeconds;
    this.interrupted = null;
    this.session.addGap(gap);
    this.timeline.addGap(gap);
    this.lastEnd = Math.max(this.lastEnd, gap.end);
    showMessage(this.els.message, 'resumed', formatSeconds(gap.end - gap.start));
  }

  finish(summary) {
    this.session.summary = summary;
    this.setState('idle');
    this.level(0);
    this.els.adaptedBadge.hidden = true;
    this.els.sessionBadge.hidden = true;
    if (this.els.adaptStatus.dataset.state === 'learning') this.showAdapt(null);  // stopped before it learnt
    this.els.speech.dataset.state = 'idle';
    this.els.speech.textContent = 'Not recording';
    this.showSummary(summary);
    this.replay.show(this.recording, this.session.fileStem());
  }

  reset() {
    this.session = new Session();
    this.recording = new Recording(TARGET_RATE);
    this.replay.clear();
    this.queue = [];
    this.lastEnd = 0;
    this.micSeconds = 0;
    this.offset = 0;
    this.interrupted = null;
    this.timeline.clear();
    this.showAdapt(null);
    this.chart.clear(LISTENING_TEXT);
    this.els.summary.hidden = true;
    showLabel(this.els.current, this.els.currentUnsure, null, '—');
    this.els.current.classList.remove('is-silent');
    this.els.confidence.textContent = 'listening…';
  }

  frame(buffer) {
    if (this.state !== 'starting' && this.state !== 'recording' && this.state !== 'stopping') return;
    this.micSeconds += buffer.byteLength / 2 / this.mic.sampleRate;
    this.recording.add(buffer);  // before it is sent: kept for replay, gaps included (the timeline's clock)
    if (this.state === 'starting') this.queue.push(buffer);
    else if (!this.interrupted) this.client.send(buffer);  // audio of a gap is not sent: no session holds it
  }

  level(rms) {
    const db = 20 * Math.log10(rms + 1e-9);
    const target = Math.min(1, Math.max(0, (db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB));
    const value = rms > 0 ? Math.max(target, (this.shown || 0) * LEVEL_RELEASE) : 0;
    this.shown = value;
    this.els.meter.style.setProperty('--level', value.toFixed(3));
    this.els.meter.setAttribute('aria-valuenow', String(Math.round(value * 100)));
  }

  emotion(received) {
    if (this.state !== 'recording' && this.state !== 'stopping') return;
    if (this.interrupted) return;  // a late event of the lost session
    // The server counts from its session's start; the page from Record.
    const event = { ...received, t0: received.t0 + this.offset, t1: received.t1 + this.offset };
    this.session.add(event);
    const speech = Boolean(event.speech && event.label);
    this.els.speech.dataset.state = speech ? 'speech' : 'silence';
    this.els.speech.textContent = speech ? 'Speech' : 'Silence';
    this.els.current.classList.toggle('is-silent', !speech);
    // Predictions relative to the speaker's voice ("Adapt to my voice"): a badge by the label.
    if (event.adapted === true && this.els.adaptStatus.dataset.state === 'learning') this.showAdapt('adapted');
    this.els.adaptedBadge.hidden = event.adapted !== true;
    // After the first seconds of speech the server judges relative to the speech so far ("session").
    this.els.sessionBadge.hidden = event.session !== true;
    if (speech) {
      showLabel(this.els.current, this.els.currentUnsure, event, '—');  // rewritten only on change (a live region)
      this.els.confidence.textContent = `${percent(event.confidence)} confidence${this.narrowLead(event)}`;
    } else {
      this.els.confidence.textContent = 'no speech right now';
    }
    this.chart.update(speech ? event.probabilities : null);
    // t0..t1 is the analysed window; its block covers only the audio new since the last event.
    const newest = Math.max(event.t0, event.t1 - HOP_MAX_S);
    const start = newest < this.lastEnd && this.lastEnd < event.t1 ? this.lastEnd : newest;
    this.timeline.add({ start, end: event.t1, speech, label: event.label, confidence: event.confidence,
      uncertain: event.uncertain });
    this.lastEnd = Math.max(this.lastEnd, event.t1);
  }

  // The server keeps its label until another one leads clearly or for a while (hysteresis), so the
  // chart's top bar can differ from the label for a moment: say so rather than look contradictory.
  narrowLead(event) {
    const probs = event.probabilities || {};
    const top = EMOTIONS.reduce((a, b) => ((probs[b] || 0) > (probs[a] || 0) ? b : a), EMOTIONS[0]);
    return top !== event.label && (probs[top] || 0) > (probs[event.label] || 0)
      ? ` · ${top} leads narrowly (${percent(probs[top])})` : '';
  }

  // Bad input or overload on our connection; overload only skips hops, so its notice passes.
  serverError(error) {
    const { message } = this.els;
    const recording = this.state === 'recording' || this.state === 'stopping';
    if (recording && SESSION_LOST.has(error.code)) return this.interrupt();
    if (error.code === 'no_adaptation') return undefined;  // openSession starts again without adapting
    if (error.code !== 'server_busy') return showMessage(message, 'server', error.message || error.code);
    showMessage(message, 'overloaded');
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => message.dataset.code === 'overloaded' && clearMessage(message), NOTICE_MS);
  }

  connection(state) {
    showConnection(this.els.banner, this.els.pill, state);
    if (state === 'connected' && this.els.message.dataset.code === 'unreachable') clearMessage(this.els.message);
    if (state === 'reconnecting' && this.state === 'recording') this.interrupt();
    if (state === 'connected' && this.interrupted) this.resume();
  }

  showSummary(summary) {
    const { summaryLabel, summaryUnsure, summaryDuration, summaryBars, summaryNote } = this.els;
    const label = summary && summary.label;
    showLabel(summaryLabel, summaryUnsure, summary, 'no speech heard');
    const heard = summary ? summary.duration : this.lastEnd;
    const confidence = label && summary.probabilities ? `${percent(summary.probabilities[label])} · ` : '';
    summaryDuration.textContent = `${confidence}${formatSeconds(heard)} of audio · ${this.session.events.length} updates`;
    renderBars(summaryBars, label ? summary.probabilities : null,
      'No speech was heard, so there are no probabilities to show.');
    const gaps = this.session.gaps.length;
    summaryNote.hidden = !(summary && summary.computed_in_page);
    summaryNote.textContent = `The connection to the server was lost ${gaps === 1 ? 'once' : `${gaps} times`} `
      + 'during this recording (hatched in the timeline), so this summary is computed in the page from the '
      + `${this.session.events.length} updates received.`;
    this.els.summary.hidden = false;
  }
}

function startUpload() {
  return new UploadPanel({
    form: document.querySelector('[data-testid="upload-form"]'),
    input: byId('upload-file'),
    reference: byId('upload-reference'),
    submit: byId('upload-submit'),
    message: byId('upload-message'),
    preview: byId('upload-preview'),
    audio: byId('upload-audio'),
    result: byId('upload-result'),
    label: document.querySelector('[data-testid="result-label"]'),
    unsure: byId('result-unsure'),
    confidence: byId('result-confidence'),
    adapted: byId('result-adapted'),
    session: byId('result-session'),
    duration: byId('result-duration'),
    bars: byId('result-bars'),
    timeline: byId('result-timeline'),
  });
}

// The Share, "How good is this?" and "Use the API" panels; the snippets learn from /api/share
// whether the server's certificate is self-signed.
function startInfoPanels() {
  const api = { curl: byId('api-curl'), python: byId('api-python') };
  showApiHelp(api, null);
  const share = new SharePanel({
    url: byId('share-url'),
    copy: byId('share-copy'),
    status: byId('share-status'),
    cert: byId('share-cert'),
    local: byId('share-local'),
    others: byId('share-others'),
    list: byId('share-list'),
    qr: byId('share-qr'),
    qrFigure: byId('share-qr-figure'),
    qrCaption: byId('share-qr-caption'),
  });
  share.load().then((answer) => showApiHelp(api, answer));
  new QualityPanel({ list: byId('quality-figures'), card: byId('model-card-link') }).load();
}

new LivePanel();
startUpload();
startInfoPanels();
