// User-facing messages: what went wrong and what to do about it. Parts in {code} render as <code>.

const MESSAGES = {
  insecure: [
    'The microphone needs a secure page. Browsers allow the microphone only on localhost or over HTTPS, ',
    'and this page was opened as ', { origin: true }, '. Open it as ', { localhost: true },
    ' on the computer running the server, or start the server with ', { code: 'python run.py --https' },
    ' and use its https:// address.',
  ],
  denied: [
    'Microphone access was denied. Allow the microphone for this site (the icon at the left of the ',
    'address bar, or the browser\'s site settings), then press Record again.',
  ],
  'no-device': ['No microphone was found. Connect one or enable it in your system settings, then press Record again.'],
  busy: ['The microphone could not be opened: another application may be using it.'],
  unsupported: ['This browser cannot record audio here (no getUserMedia or AudioWorklet). Use a current Chrome, Edge or Firefox.'],
  failed: ['The microphone could not be started: ', { detail: true }],
  unreachable: ['The server is unreachable. Is ', { code: 'python run.py' }, ' still running? The page reconnects by itself.'],
  'no-client': [
    'The Socket.IO client did not load, so live recording is unavailable. Run ', { code: 'npm ci' },
    ' in the project folder and reload. File uploads still work.',
  ],
  lost: ['The connection to the server was lost, so recording stopped. The events received so far are kept below.'],
  interrupted: ['The server lost this session (connection dropped or server restarted). Still recording: ',
    'the analysis resumes as soon as the server answers.'],
  resumed: ['Reconnected: the analysis resumed after a gap of ', { detail: true },
    ' (marked in the timeline). The summary at Stop is computed in the page over everything received.'],
  server: ['The server reported a problem: ', { detail: true }],
  overloaded: ['The server is busy, so some moments were not analysed: the timeline has gaps there.'],
  'no-adaptation': ['This model cannot adapt to a voice, so this recording goes on without adapting.'],
  'adapt-failed': ['Could not adapt to your voice (', { detail: true }, '), so this recording goes on without adapting.'],
  'no-summary': ['The server sent no summary for this session; the events received are kept below.'],
};

function render(code, detail) {
  const parts = MESSAGES[code] || MESSAGES.server;
  return parts.map((part) => {
    if (typeof part === 'string') return document.createTextNode(part);
    if (part.origin) return document.createTextNode(window.location.origin);
    if (part.detail) return document.createTextNode(detail || 'unknown error');
    const el = document.createElement('code');
    el.textContent = part.localhost ? `http://localhost:${window.location.port || 5000}/` : part.code;
    return el;
  });
}

export function showMessage(el, code, detail) {
  el.replaceChildren(...render(code, detail));
  el.dataset.code = code;
  el.hidden = false;
}

export function showText(el, text) {
  el.textContent = text;
  el.dataset.code = 'text';
  el.hidden = false;
}

export function clearMessage(el) {
  el.replaceChildren();
  delete el.dataset.code;
  el.hidden = true;
}

// The connection banner and status pill follow the socket: connected / reconnecting / closed.
export function showConnection(banner, pill, state) {
  banner.hidden = state !== 'reconnecting';
  pill.dataset.state = state;
  pill.textContent = { connected: 'Connected', reconnecting: 'Reconnecting…', closed: 'Offline' }[state] || 'Connecting…';
}
