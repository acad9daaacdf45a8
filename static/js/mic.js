// Microphone capture: getUserMedia -> AudioContext -> AudioWorklet -> Int16 frames at 16 kHz.

export const TARGET_RATE = 16000;   // Hz, declared to the server in `start`
export const FRAME_SAMPLES = 4000;  // 250 ms frames
const FLUSH_TIMEOUT_MS = 500;

const CONSTRAINTS = {
  audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
};

// A failure the page can explain; `code` picks the message (see messages.js).
export class MicError extends Error {
  constructor(code, cause) {
    super(cause && cause.message ? cause.message : code);
    this.name = 'MicError';
    this.code = code;
  }
}

function classify(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return new MicError('denied', err);
    case 'NotFoundError':
    case 'OverconstrainedError':
      return new MicError('no-device', err);
    case 'NotReadableError':
    case 'AbortError':
      return new MicError('busy', err);
    default:
      return new MicError('failed', err);
  }
}

export class Microphone {
  constructor({ onFrame, onLevel }) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.flushed = null;
  }

  get sampleRate() {
    return TARGET_RATE;
  }

  async start() {
    if (!window.isSecureContext) throw new MicError('insecure');
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
      throw new MicError('unsupported');
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
    } catch (err) {
      throw classify(err);
    }
    try {
      await this.connect();
    } catch (err) {
      this.release();
      throw err instanceof MicError ? err : new MicError('failed', err);
    }
  }

  async connect() {
    // Native rate: Firefox refuses to connect a stream to a context of another rate.
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule(new URL('./recorder-processor.js', import.meta.url));
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, 'recorder-processor', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      processorOptions: { targetRate: TARGET_RATE, frameSamples: FRAME_SAMPLES },
    });
    this.node.port.onmessage = (event) => this.receive(event.data);
    source.connect(this.node);
    // The node writes silence; connecting it keeps the graph pulling it in every browser.
    this.node.connect(this.context.destination);
    if (this.context.state === 'suspended') await this.context.resume();
  }

  receive(message) {
    if (message.type === 'audio') this.onFrame(message.buffer);
    else if (message.type === 'level') this.onLevel(message.rms, message.peak);
    else if (message.type === 'flushed' && this.flushed) this.flushed();
  }

  // Send the last partial frame, then release the device.
  async stop() {
    if (this.node) {
      await new Promise((resolve) => {
        this.flushed = resolve;
        setTimeout(resolve, FLUSH_TIMEOUT_MS);
        this.node.port.postMessage({ type: 'flush' });
      });
    }
    this.release();
  }

  release() {
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close().catch(() => {});
    this.node = null;
    this.stream = null;
    this.context = null;
    this.flushed = null;
  }
}
