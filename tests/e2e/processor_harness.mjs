// Runs static/js/recorder-processor.js outside a browser: stubs the AudioWorklet globals, feeds
// a test signal in 128-sample blocks and prints what the processor posts, as JSON on stdout.
// Usage: node processor_harness.mjs <processor.js> <inputRate> <seconds> <freqHz,...> [channels]

import { readFileSync } from 'node:fs';

const [file, rateArg, secondsArg, freqsArg, channelsArg] = process.argv.slice(2);
const inputRate = Number(rateArg);
const freqs = freqsArg.split(',').map(Number);
const channels = Number(channelsArg || 1);
const BLOCK = 128;

let registered = null;
const posted = [];
class AudioWorkletProcessor {
  constructor() {
    this.port = { postMessage: (msg) => posted.push(msg), onmessage: null };
  }
}
const source = readFileSync(file, 'utf8');
new Function('AudioWorkletProcessor', 'registerProcessor', 'sampleRate', source)(
  AudioWorkletProcessor, (name, cls) => { registered = { name, cls }; }, inputRate);

const proc = new registered.cls({ processorOptions: {} });
const total = Math.round(Number(secondsArg) * inputRate);
let fed = 0;
for (let start = 0; start < total; start += BLOCK) {
  const block = Array.from({ length: channels }, () => new Float32Array(BLOCK));
  for (let i = 0; i < BLOCK; i++) {
    const t = (start + i) / inputRate;
    const x = freqs.reduce((acc, f) => acc + 0.4 * Math.sin(2 * Math.PI * f * t), 0);
    block.forEach((ch) => { ch[i] = x; });
  }
  proc.process([block], [[]], {});
  fed += BLOCK;
}
proc.port.onmessage({ data: { type: 'flush' } });

const frames = posted.filter((m) => m.type === 'audio').map((m) => Array.from(new Int16Array(m.buffer)));
const levels = posted.filter((m) => m.type === 'level');
console.log(JSON.stringify({
  name: registered.name,
  inputSamples: fed,
  frameLengths: frames.map((f) => f.length),
  samples: frames.flat(),
  levels: levels.length,
  flushed: posted.some((m) => m.type === 'flushed'),
  maxRms: Math.max(...levels.map((m) => m.rms)),
}));
