// A stand-in for socket.io.min.js in browser tests: window.io() returns a socket that connects at
// once, acknowledges `start`, counts the `audio` bytes the page sends and answers `stop` with
// window.fakeStream.summary. Tests play the server through window.fakeStream.fire(event, payload).
// `start` payloads are kept in sent.startPayloads; window.fakeStream.ack may be a function of the payload.
(() => {
  const handlers = {};
  const sent = { audioBytes: 0, frames: 0, starts: 0, stops: 0, startPayloads: [] };
  const fire = (name, payload) => (handlers[name] || []).slice().forEach((fn) => fn(payload));
  const socket = {
    connected: false,
    on(name, fn) {
      (handlers[name] = handlers[name] || []).push(fn);
      return socket;
    },
    off(name, fn) {
      handlers[name] = (handlers[name] || []).filter((f) => f !== fn);
      return socket;
    },
    emit(name, payload) {
      if (name === 'audio') {
        sent.audioBytes += payload.byteLength;
        sent.frames += 1;
      } else if (name === 'stop') {
        sent.stops += 1;
        setTimeout(() => fire('summary', window.fakeStream.summary), 20);
      }
      return socket;
    },
    timeout() {
      return {
        emitWithAck: async (name, payload) => {
          sent.starts += 1;
          sent.startPayloads.push(payload);
          const { ack } = window.fakeStream;
          return typeof ack === 'function' ? ack(payload) : ack;
        },
      };
    },
  };
  window.fakeStream = { sent, fire, summary: null, ack: { ok: true, session: 'fake' } };
  window.io = () => {
    setTimeout(() => {
      socket.connected = true;
      fire('connect');
    }, 0);
    return socket;
  };
})();
