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

export function colorOf(label) {
  return COLORS[label] || SILENCE_COLOR;
}

export function percent(p) {
  return `${Math.round((p || 0) * 100)}%`;
}

export function formatSeconds(s) {
  return `${(s || 0).toFixed(1)} s`;
}
