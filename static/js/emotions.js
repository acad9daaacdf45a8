// The seven labels in contract order, and the one colour each view uses for them.
// Colours follow the Okabe-Ito palette (distinguishable with colour-vision deficiencies);
// every view also prints the label, so colour never carries meaning alone.

export const EMOTIONS = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised'];

export const COLORS = {
  neutral: '#8a94a6',
  happy: '#e69f00',
  sad: '#0072b2',
  angry: '#d55e00',
  fearful: '#7e57c2',
  disgust: '#009e73',
  surprised: '#cc79a7',
};

export const SILENCE_COLOR = '#d5dae3';
export const UNSURE = 'unsure';  // the word shown beside a label the model is not confident of

export function colorOf(label) {
  return COLORS[label] || SILENCE_COLOR;
}

export function percent(p) {
  return `${Math.round((p || 0) * 100)}%`;
}

export function formatSeconds(s) {
  return `${(s || 0).toFixed(1)} s`;
}

// Whether a result (an `emotion` event, a summary, an upload result or a segment) has a label the
// model itself calls uncertain (`"uncertain": true`, issue 12); absent or false: a plain label.
export function isUncertain(result) {
  return Boolean(result && result.label && result.uncertain === true);
}

// Shows `labelEl` (a label, never changed but for its text) greyed with "· unsure" in `unsureEl`
// beside it when the result is uncertain.
export function showLabel(labelEl, unsureEl, result, emptyText) {
  const label = result && result.label;
  const text = label || emptyText;
  if (labelEl.textContent !== text) labelEl.textContent = text;  // a live region announces each rewrite
  labelEl.style.setProperty('--c', colorOf(label));
  const unsure = isUncertain(result);
  labelEl.classList.toggle('is-uncertain', unsure);
  if (unsureEl) unsureEl.hidden = !unsure;
}
