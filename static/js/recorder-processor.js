// AudioWorklet processor (audio thread): microphone blocks -> 16 kHz Int16 frames + a level.
// Arithmetic only: no DOM, no sockets. Runs at the AudioContext's native rate (`sampleRate`).

const TARGET_RATE = 16000;      // Hz, what the server is told in `start`
const FRAME_SAMPLES = 4000;     // samples per posted frame at 16 kHz (250 ms)
const LEVEL_INTERVAL_S = 0.05;  // one level message per 50 ms (~20 Hz)
const FIR_TAPS = 31;            // odd: symmetric low-pass, delay (FIR_TAPS - 1) / 2
const CUTOFF_HZ = 7200;         // below the 8 kHz Nyquist of the 16 kHz output

// Windowed-sinc (Hamming) low-pass taps, normalised to unity gain at DC.
function lowPassTaps(cutoff, rate, n) {
  const fc = cutoff / rate;  // cycles per input sample
  const mid = (n - 1) / 2;
  const taps = new Float32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    taps[i] = sinc * (0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (n - 1)));
    sum += taps[i];
  }
  for (let i = 0; i < n; i++) taps[i] /= sum;
  return taps;
}

class RecorderProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || TARGET_RATE;
    this.frameSamples = opts.frameSamples || FRAME_SAMPLES;
    this.step = sampleRate / this.targetRate;  // input samples per output sample
    // Only a downsampling context needs the anti-alias filter.
    this.taps = this.step > 1 ? lowPassTaps(CUTOFF_HZ, sampleRate, FIR_TAPS) : new Float32Array([1]);
    this.history = new Float32Array(this.taps.length);  // ring buffer of recent inputs
    this.head = 0;
    this.phase = 1;     // position of the next output, in input samples after `prev`
    this.prev = 0;      // previous filtered input sample
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.levelEvery = Math.round(sampleRate * LEVEL_INTERVAL_S);
    this.levelCount = 0;
    this.sumSquares = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === 'flush') this.flush();
    };
  }

  filter(x) {
    const n = this.taps.length;
    this.history[this.head] = x;
    let y = 0;
    let k = this.head;
    for (let i = 0; i < n; i++) {
      y += this.taps[i] * this.history[k];
      k = k === 0 ? n - 1 : k - 1;
    }
    this.head = this.head + 1 === n ? 0 : this.head + 1;
    return y;
  }

  push(value) {
    const v = value > 1 ? 1 : value < -1 ? -1 : value;
    this.frame[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    if (this.filled === this.frameSamples) {
      const buffer = this.frame.buffer;
      this.port.postMessage({ type: 'audio', buffer }, [buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
    }
  }

  // Send what is buffered (a short last frame) and say so; used when recording stops.
  flush() {
    if (this.filled > 0) {
      const buffer = this.frame.slice(0, this.filled).buffer;
      this.port.postMessage({ type: 'audio', buffer }, [buffer]);
      this.filled = 0;
    }
    this.port.postMessage({ type: 'flushed' });
  }

  level(x) {
    this.sumSquares += x * x;
    const a = x < 0 ? -x : x;
    if (a > this.peak) this.peak = a;
    if (++this.levelCount >= this.levelEvery) {
      const rms = Math.sqrt(this.sumSquares / this.levelCount);
      this.port.postMessage({ type: 'level', rms, peak: this.peak });
      this.levelCount = 0;
      this.sumSquares = 0;
      this.peak = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;  // not connected yet
    const n = channels[0].length;
    const count = channels.length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < count; c++) x += channels[c][i];
      x /= count;
      this.level(x);
      const y = this.filter(x);
      // Emit every output sample that falls between the previous input and this one.
      while (this.phase <= 1) {
        this.push(this.prev + (y - this.prev) * this.phase);
        this.phase += this.step;
      }
      this.phase -= 1;
      this.prev = y;
    }
    return true;
  }
}

registerProcessor('recorder-processor', RecorderProcessor);
