// The "How good is this?" panel: the loaded model's held-out figures from GET /api/model (UA with
// the chance level, as bars with a chance mark) and a link to its model card.

import { percent } from './emotions.js';

function figure({ what, ua, chance }) {
  const item = document.createElement('li');
  item.className = 'quality-item';
  const name = document.createElement('span');
  name.className = 'quality-what';
  name.textContent = what;
  const track = document.createElement('span');
  track.className = 'quality-track';
  track.setAttribute('aria-hidden', 'true');
  const fill = document.createElement('span');
  fill.className = 'quality-fill';
  fill.style.setProperty('--w', `${(ua * 100).toFixed(1)}%`);
  const mark = document.createElement('span');
  mark.className = 'quality-chance';
  mark.style.setProperty('--x', `${((chance || 0) * 100).toFixed(1)}%`);
  track.append(fill, mark);
  const value = document.createElement('span');
  value.className = 'quality-value';
  const strong = document.createElement('strong');
  strong.textContent = `${percent(ua)} UA`;
  value.append(strong, chance != null ? ` (chance ${percent(chance)})` : '');
  item.append(name, track, value);
  return item;
}

export class QualityPanel {
  // els: {list, card}
  constructor(els) {
    this.els = els;
  }

  show(model) {
    const { list, card } = this.els;
    const headline = (model && model.headline) || [];
    if (headline.length) {
      list.replaceChildren(...headline.map(figure));
    } else {
      const none = document.createElement('li');
      none.className = 'quality-none';
      none.textContent = model
        ? `No held-out figures are recorded for this model (${model.name || 'unnamed'}).`
        : 'The model\'s figures could not be loaded.';
      list.replaceChildren(none);
    }
    card.hidden = !(model && model.card);
    if (model && model.card) card.href = model.card;
  }

  async load() {
    let model = null;
    try {
      const response = await fetch('/api/model', { headers: { Accept: 'application/json' } });
      if (response.ok) model = await response.json();
    } catch (err) {
      model = null;
    }
    this.show(model);
    return model;
  }
}
