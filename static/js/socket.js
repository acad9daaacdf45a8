// Socket.IO client for the `/stream` namespace (see CONTRACTS.md): start/audio/stop in,
// emotion/calibrated/summary/error out. Reconnects by itself; reports its state through onConnection.

const NAMESPACE = '/stream';
const ACK_TIMEOUT_MS = 5000;
const SUMMARY_TIMEOUT_MS = 15000;

// The server answered but refused (`{ok: false, error}` or an `error` event).
export class StreamError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'StreamError';
    this.code = code;
  }
}

function clientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class StreamClient {
  constructor({ onEmotion, onCalibrated, onServerError, onConnection }) {
    if (typeof window.io !== 'function') throw new StreamError('no-client', 'Socket.IO client not loaded');
    // `c` names this page for the load balancer: every request of one client reaches the same app
    // process (nginx `hash $arg_c`), which long-polling needs, even for clients behind one address.
    this.socket = window.io(NAMESPACE, {
      reconnectionDelay: 500, reconnectionDelayMax: 3000, query: { c: clientId() },
    });
    this.socket.on('connect', () => onConnection('connected'));
    this.socket.on('connect_error', () => onConnection('reconnecting'));
    this.socket.on('disconnect', (reason) => onConnection(reason === 'io client disconnect' ? 'closed' : 'reconnecting'));
    this.socket.on('emotion', onEmotion);
    if (onCalibrated) this.socket.on('calibrated', (payload) => onCalibrated(payload || {}));
    this.socket.on('error', (payload) => onServerError(payload || {}));
  }

  get connected() {
    return this.socket.connected;
  }

  // Open a session; resolves with the ack's session id, rejects with a StreamError (its code is the
  // server's, e.g. `no_adaptation`, when the ack carries one). `calibrateS`: seconds of speech the
  // server takes as a calm reference of the voice ("Adapt to my voice"); null: no adaptation.
  async start(sampleRate, calibrateS = null) {
    if (!this.socket.connected) throw new StreamError('unreachable', 'The server is unreachable.');
    let ack;
    try {
      const payload = { sample_rate: sampleRate };
      if (calibrateS) payload.calibrate_s = calibrateS;
      ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck('start', payload);
    } catch (err) {
      throw new StreamError('timeout', 'The server did not answer the start request.');
    }
    if (!ack || !ack.ok) {
      throw new StreamError((ack && ack.code) || 'refused', (ack && ack.error) || 'The server refused to start a session.');
    }
    return ack.session;
  }

  // One frame of little-endian Int16 PCM, sent as a binary packet.
  send(buffer) {
    if (this.socket.connected) this.socket.emit('audio', buffer);
  }

  // Close the session; resolves with the `summary` payload, or null when none comes.
  stop() {
    return new Promise((resolve) => {
      if (!this.socket.connected) {
        resolve(null);
        return;
      }
      const done = (summary) => {
        clearTimeout(timer);
        this.socket.off('summary', done);
        this.socket.off('disconnect', lost);
        resolve(summary);
      };
      const lost = () => done(null);
      const timer = setTimeout(() => done(null), SUMMARY_TIMEOUT_MS);
      this.socket.on('summary', done);
      this.socket.on('disconnect', lost);
      this.socket.emit('stop');
    });
  }
}
