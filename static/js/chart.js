// The live probability chart: horizontal bars, one per emotion, redrawn on every `emotion` event.
// Uses Chart.js (window.Chart from /vendor/chart.umd.min.js); plain HTML bars if it is missing.
// Until the first hop of speech it shows a sentence, not seven "0%" bars that would read as data.

import { EMOTIONS, colorOf, percent } from './emotions.js';
import { renderBars } from './bars.js';

const ANIMATION_MS = 180;  // shorter than the 250-500 ms between events

// Prints each bar's percentage at its end, so values are readable without hovering.
const valueLabels = {
  id: 'valueLabels',
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    const meta = chart.getDatasetMeta(0);
    ctx.save();
    ctx.font = '600 12px system-ui, sans-serif';
    ctx.fillStyle = '#1f2933';
    ctx.textBaseline = 'middle';
    meta.data.forEach((bar, i) => {
      ctx.fillText(percent(chart.data.datasets[0].data[i]), bar.x + 6, bar.y);
    });
    ctx.restore();
  },
};

function chartConfig() {
  return {
    type: 'bar',
    data: {
      labels: EMOTIONS,
      datasets: [{
        data: EMOTIONS.map(() => 0),
        backgroundColor: EMOTIONS.map(colorOf),
        borderRadius: 4,
        barPercentage: 0.85,
        categoryPercentage: 0.9,
      }],
    },
    options: {
      indexAxis: 'y',
      responsive: true,
      maintainAspectRatio: false,
      animation: { duration: ANIMATION_MS },
      layout: { padding: { right: 40 } },
      scales: {
        x: { min: 0, max: 1, ticks: { callback: (v) => percent(v), maxTicksLimit: 6 }, grid: { color: '#edf0f4' } },
        y: { ticks: { font: { size: 13 }, color: '#1f2933' }, grid: { display: false } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item) => ` ${percent(item.parsed.x)}` } },
      },
    },
    plugins: [valueLabels],
  };
}

export class ProbabilityChart {
  constructor(wrapper) {
    this.wrapper = wrapper;
    this.canvas = wrapper.querySelector('canvas');
    this.empty = wrapper.querySelector('.chart-empty');
    this.chart = null;
    this.fallback = null;
    if (window.Chart) {
      this.chart = new window.Chart(this.canvas, chartConfig());
    } else {
      this.canvas.hidden = true;
      this.fallback = document.createElement('div');
      this.fallback.className = 'chart-fallback';
      this.canvas.after(this.fallback);
    }
    this.clear(this.empty.textContent);
  }

  // probabilities: {label: p} or null (no speech: bars keep their values, greyed out).
  update(probabilities) {
    if (!probabilities) {
      this.wrapper.classList.toggle('is-silent', !this.isEmpty);
      return;
    }
    this.wrapper.classList.remove('is-silent');
    this.setEmpty(false);
    const values = EMOTIONS.map((e) => probabilities[e] || 0);
    this.canvas.setAttribute('aria-label',
      `Probabilities: ${EMOTIONS.map((e, i) => `${e} ${percent(values[i])}`).join(', ')}`);
    if (this.chart) {
      this.chart.data.datasets[0].data = values;
      this.chart.update();
    } else {
      renderBars(this.fallback, probabilities);
    }
  }

  // No data (yet): the sentence `text` in place of the bars.
  clear(text) {
    this.wrapper.classList.remove('is-silent');
    this.empty.textContent = text;
    this.setEmpty(true);
    this.canvas.setAttribute('aria-label', 'Probabilities of the seven emotions: none yet');
    if (this.chart) {
      this.chart.data.datasets[0].data = EMOTIONS.map(() => 0);
      this.chart.update('none');
    } else {
      this.fallback.replaceChildren();
    }
  }

  get isEmpty() {
    return this.wrapper.classList.contains('is-empty');
  }

  setEmpty(empty) {
    this.wrapper.classList.toggle('is-empty', empty);
    this.empty.hidden = !empty;
  }
}
