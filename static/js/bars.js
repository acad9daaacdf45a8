// Static probability bars in HTML (summary, upload result): label, bar, percentage per emotion.
// Without probabilities (no speech heard) a short sentence says so instead of seven "0%" bars.

import { EMOTIONS, colorOf, percent } from './emotions.js';

function barRow(label, p, top) {
  const row = document.createElement('div');
  row.className = 'bar-row';
  row.classList.toggle('is-top', top);
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
}

// probabilities: {label: p} or null; emptyText: what to show when it is null.
export function renderBars(container, probabilities, emptyText = 'No speech, so no probabilities.') {
  container.classList.add('bars');
  if (!probabilities) {
    const empty = document.createElement('p');
    empty.className = 'bars-empty';
    empty.textContent = emptyText;
    container.replaceChildren(empty);
    return;
  }
  const top = EMOTIONS.reduce((a, b) => ((probabilities[b] || 0) > (probabilities[a] || 0) ? b : a), EMOTIONS[0]);
  container.replaceChildren(...EMOTIONS.map((label) => barRow(label, probabilities[label] || 0, label === top)));
}
