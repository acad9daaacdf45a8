// What the microphone recorded, kept in the page for replay and download after Stop: the 16 kHz
// Int16 frames the page streams, the newest `maxSeconds` of them (memory stays bounded), as a WAV.
// Nothing of it is sent anywhere but in the live stream; nothing is stored on the server.

export const MAX_RECORDING_S = 600;  // 10 min of 16 kHz Int16 mono = 19.2 MB
const WAV_HEADER_BYTES = 44;

// The 44-byte header of a PCM WAV file: mono, 16-bit, `sampleRate` Hz, `dataBytes` of samples.
export function wavHeader(dataBytes, sampleRate) {
  const view = new DataView(new ArrayBuffer(WAV_HEADER_BYTES));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, 'RIFF');
  view.setUint32(4, 36 + dataBytes, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  view.setUint32(16, 16, true);  // size of the fmt chunk
  view.setUint16(20, 1, true);  // PCM
  view.setUint16(22, 1, true);  // channels
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);  // bytes per second
  view.setUint16(32, 2, true);  // bytes per frame
  view.setUint16(34, 16, true);  // bits per sample
  text(36, 'data');
  view.setUint32(40, dataBytes, true);
  return view.buffer;
}

export class Recording {
  constructor(sampleRate, maxSeconds = MAX_RECORDING_S) {
    this.sampleRate = sampleRate;
    this.maxBytes = Math.floor(maxSeconds * sampleRate) * 2;
    this.frames = [];
    this.bytes = 0;  // held
    this.totalBytes = 0;  // recorded since Record
  }

  // One frame of little-endian Int16 PCM; copied, so the caller may hand the buffer on.
  add(buffer) {
    const frame = buffer.slice(0);
    this.frames.push(frame);
    this.bytes += frame.byteLength;
    this.totalBytes += frame.byteLength;
    while (this.bytes > this.maxBytes && this.frames.length > 0) {
      const excess = this.bytes - this.maxBytes;
      const first = this.frames[0];
      if (first.byteLength <= excess) {
        this.frames.shift();
        this.bytes -= first.byteLength;
      } else {  // keep the newest part of the oldest frame (whole samples)
        const cut = excess + (excess % 2);
        this.frames[0] = first.slice(cut);
        this.bytes -= cut;
      }
    }
  }

  get seconds() {
    return this.bytes / 2 / this.sampleRate;
  }

  get totalSeconds() {
    return this.totalBytes / 2 / this.sampleRate;
  }

  // Whether the oldest audio was dropped to stay within `maxSeconds`.
  get trimmed() {
    return this.totalBytes > this.bytes;
  }

  toWav() {
    return new Blob([wavHeader(this.bytes, this.sampleRate), ...this.frames], { type: 'audio/wav' });
  }
}
