// After Stop: play back and download what was recorded (a WAV made in the page from a Recording).

import { MAX_RECORDING_S } from './recording.js';

function clock(seconds) {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class ReplayView {
  // els: {box, audio, note, download}
  constructor(els) {
    this.els = els;
    this.url = null;
  }

  // recording: a Recording (or null: nothing to replay); stem: the download's file name, no extension.
  show(recording, stem) {
    this.clear();
    if (!recording || recording.bytes === 0) return;
    const { box, audio, note, download } = this.els;
    this.url = URL.createObjectURL(recording.toWav());
    audio.src = this.url;
    download.href = this.url;
    download.download = `${stem}.wav`;
    const limit = `${MAX_RECORDING_S / 60} minutes`;
    note.textContent = recording.trimmed
      ? `The recording ran ${clock(recording.totalSeconds)}; this replay keeps its last ${clock(recording.seconds)} `
        + `(at most ${limit} are kept). It lives in this page only: nothing is stored on the server.`
      : `${clock(recording.seconds)} recorded at 16 kHz, the audio the analysis uses, kept in this page only `
        + `(at most the last ${limit}); nothing is stored on the server.`;
    box.hidden = false;
    download.hidden = false;
  }

  // Forget the last recording (its object URL too).
  clear() {
    const { box, audio, download } = this.els;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    audio.removeAttribute('src');
    audio.load();
    download.removeAttribute('href');
    box.hidden = true;
    download.hidden = true;
  }
}
