// Static probability bars in HTML (summary, upload result): label, bar, percentage per emotion.

import { EMOTIONS, colorOf, percent } from './emotions.js';

export function renderBars(container, probabilities) {
  const probs = probabilities || {};
  const top = EMOTIONS.reduce((a, b) => ((probs[b] || 0) > (probs[a] || 0) ? b : a), EMOTIONS[0]);
  const rows = EMOTIONS.map((label) => {
    const p = probs[label] || 0;
    const row = document.createElement('div');
    row.className = 'bar-row';
    row.classList.toggle('is-top', probabilities != null && label === top);
    const name = document.createElement('span');
    name.className = 'bar-label';
    name.textContent = label;
    const track = document.createElement('span');
    track.className = 'bar-track';
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    fill.style.setProperty('--w', `${(p * 100).toFixed(1)}%`);
    fill.style.setProperty('--c', colorOf(label));
    track.append(fill);
    const value = document.createElement('span');
    value.className = 'bar-value';
    value.textContent = percent(p);
    row.append(name, track, value);
    return row;
  });
  container.classList.add('bars');
  container.replaceChildren(...rows);
}
