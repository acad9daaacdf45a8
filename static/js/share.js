// The Share panel: the link to send (from GET /api/share), a copy button and a QR code for phones
// (qrcode-generator, window.qrcode from /vendor/qrcode-generator/dist/qrcode.js), with a line on
// the certificate warning the other person will see when the server's certificate is self-signed.

const QR_MODULE_PX = 6;  // canvas pixels per QR module (shown at a fixed CSS size)
const QR_QUIET = 4;  // modules of white border the standard asks for
const STATUS_MS = 4000;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

const isLoopback = (url) => LOOPBACK.has(new URL(url).hostname);

function code(text) {
  const el = document.createElement('code');
  el.textContent = text;
  return el;
}

// The link worth sending: the public URL, else the server's first (best) link, else this page's
// origin; a loopback link is no use to anyone else, so the page's own origin wins over it.
export function chooseUrl(share, origin = window.location.origin) {
  const own = `${origin}/`;
  const best = (share && (share.public_url || (share.urls && share.urls[0]))) || own;
  return isLoopback(best) && !isLoopback(own) ? own : best;
}

// Draws `text` as a QR code on `canvas`; false when the QR library did not load.
export function drawQr(canvas, text) {
  if (typeof window.qrcode !== 'function') return false;
  const qr = window.qrcode(0, 'M');  // smallest version that fits, 15 % error correction
  qr.addData(text);
  qr.make();
  const count = qr.getModuleCount();
  const size = (count + 2 * QR_QUIET) * QR_MODULE_PX;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = '#000';
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < count; col += 1) {
      if (qr.isDark(row, col)) {
        ctx.fillRect((col + QR_QUIET) * QR_MODULE_PX, (row + QR_QUIET) * QR_MODULE_PX, QR_MODULE_PX, QR_MODULE_PX);
      }
    }
  }
  canvas.dataset.text = text;
  return true;
}

// Copies `text`: the asynchronous clipboard where the page may use it, else the selected input.
async function copyText(text, input) {
  if (navigator.clipboard && navigator.clipboard.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      // not allowed here: fall back to the selection
    }
  }
  input.focus();
  input.select();
  try {
    return document.execCommand('copy');
  } catch (err) {
    return false;
  }
}

export class SharePanel {
  // els: {url, copy, status, cert, local, others, list, qr, qrFigure, qrCaption}
  constructor(els) {
    this.els = els;
    this.statusTimer = null;
    this.show(null);
    els.copy.addEventListener('click', () => this.copy());
    els.url.addEventListener('focus', () => els.url.select());
  }

  // share: the answer of GET /api/share, or null (not known: this page's own address).
  show(share) {
    const { url, cert, local, others, list, qr, qrFigure, qrCaption } = this.els;
    const link = chooseUrl(share);
    url.value = link;
    url.size = Math.min(Math.max(link.length, 20), 48);
    cert.hidden = !(share && share.self_signed);
    local.hidden = false;
    if (isLoopback(link)) {
      local.replaceChildren('This link works only on this computer. To share the demo on your network, start the '
        + 'server with ', code('python run.py --host 0.0.0.0 --https'), ' and send the link this panel then shows.');
    } else if (new URL(link).protocol === 'http:') {
      local.replaceChildren('Over plain http, other devices can upload files but not use their microphone '
        + '(browsers allow it only on https pages): start the server with ', code('--https'),
      ' to share live recording.');
    } else {
      local.hidden = true;
    }
    const rest = share && share.urls ? share.urls.filter((u) => u !== link) : [];
    list.replaceChildren(...rest.map((u) => {
      const item = document.createElement('li');
      item.append(code(u));
      return item;
    }));
    others.hidden = rest.length === 0;
    const drawn = drawQr(qr, link);
    qr.hidden = !drawn;
    qr.setAttribute('aria-label', `QR code of ${link}`);
    qrCaption.textContent = drawn ? 'Scan with a phone\'s camera'
      : 'No QR code: its library did not load (run npm ci in the project folder).';
    qrFigure.classList.toggle('is-missing', !drawn);
  }

  async load() {
    try {
      const response = await fetch('/api/share', { headers: { Accept: 'application/json' } });
      if (!response.ok) return null;
      const share = await response.json();
      this.show(share);
      return share;
    } catch (err) {
      return null;  // keep this page's own address
    }
  }

  async copy() {
    const { url, status } = this.els;
    const ok = await copyText(url.value, url);
    status.textContent = ok ? 'Copied.' : 'Select the link and copy it (Ctrl+C or long-press).';
    status.dataset.state = ok ? 'copied' : 'failed';
    clearTimeout(this.statusTimer);
    this.statusTimer = setTimeout(() => {
      status.textContent = '';
      delete status.dataset.state;
    }, STATUS_MS);
  }
}
