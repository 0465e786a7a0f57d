// tokenmeter's dashboard page. It reads the JSON API of the same server (/api/v1/…), draws the
// charts with Chart.js and the tables with plain DOM (every value from the API is set as text,
// never as HTML: tag values come from the events services send).
//
// Built into ../static/app.js by `npm run build` (esbuild); the bundle is committed and
// embedded in the Go binary.
import {
  Chart, BarController, BarElement, LineController, LineElement, PointElement,
  CategoryScale, LinearScale, Tooltip, Legend, Filler,
} from 'chart.js';

Chart.register(BarController, BarElement, LineController, LineElement, PointElement,
  CategoryScale, LinearScale, Tooltip, Legend, Filler);

const palette = ['#2f6fde', '#f79009', '#12b76a', '#ee46bc', '#7a5af8', '#06aed4', '#f04438', '#667085', '#98a2b3'];
const dims = ['team', 'feature', 'env', 'cost_center'];
const charts = {};
// Tests and curious users read the charts from here.
window.tokenmeter = { charts };

const $ = (id) => document.getElementById(id);

function money(exact) {
  const n = Number(exact);
  const digits = Math.abs(n) >= 100 ? 2 : 4;
  return n.toLocaleString('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: digits });
}

function params(extra) {
  const p = new URLSearchParams(extra);
  for (const d of dims) {
    const v = $('filter-' + d).value;
    if (v !== '') p.set(d, v);
  }
  return p;
}

// The server's clock decides which day is today.
function rangeParams() {
  return { days: $('range').value };
}

async function get(path, p) {
  const resp = await fetch('api/v1/' + path + (p ? '?' + p.toString() : ''), { headers: { Accept: 'application/json' } });
  const body = await resp.json();
  if (!resp.ok) throw new Error(path + ': ' + (body.error || resp.status));
  return body;
}

function fill(tableId, rows, emptyText) {
  const tbody = $(tableId).tBodies[0];
  tbody.replaceChildren();
  if (rows.length === 0) {
    const td = document.createElement('td');
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = 'empty';
    td.textContent = emptyText;
    tbody.append(document.createElement('tr'));
    tbody.rows[0].append(td);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      const cell = typeof c === 'object' && c !== null ? c : { text: c };
      td.textContent = cell.text;
      if (cell.title) td.title = cell.title;
      if (cell.num) td.className = 'num';
      if (cell.cls) td.className = cell.cls;
      tr.append(td);
    }
    tbody.append(tr);
  }
}

const usd = (exact) => ({ text: money(exact), title: exact + ' USD', num: true });

function draw(name, config) {
  if (charts[name]) {
    charts[name].data = config.data;
    charts[name].update('none');
    return;
  }
  config.options = Object.assign({
    responsive: true, maintainAspectRatio: false, animation: false,
    plugins: {
      tooltip: {
        callbacks: {
          label: (ctx) => ctx.dataset.label + ': ' + ctx.dataset.exact[ctx.dataIndex] + ' USD',
        },
      },
    },
  }, config.options || {});
  charts[name] = new Chart($('chart-' + name), config);
}

function dataset(label, exact, i, extra) {
  return Object.assign({
    label, exact, data: exact.map(Number), backgroundColor: palette[i % palette.length], borderColor: palette[i % palette.length],
  }, extra || {});
}

async function loadOptions() {
  const r = rangeParams();
  await Promise.all(dims.map(async (d) => {
    const sel = $('filter-' + d);
    const body = await get('spend', new URLSearchParams({ by: d, limit: '100', days: r.days }));
    const keep = sel.value;
    sel.replaceChildren(new Option('all', ''));
    for (const l of body.lines) sel.append(new Option(l.key, l.key));
    if (keep !== '' && !body.lines.some((l) => l.key === keep)) sel.append(new Option(keep, keep));
    sel.value = keep;
  }));
}

async function refresh() {
  const r = rangeParams();
  const by = $('by').value;
  const [daily, spend, trend, movers, unpriced, coverage, metered, alerts, budgets] = await Promise.all([
    get('daily', params({ by: 'model', days: r.days })),
    get('spend', params({ by, days: r.days, limit: '20' })),
    get('trend', params({ days: '7' })),
    get('movers', params({ by: 'team', days: '7', limit: '10' })),
    get('unpriced', params({ days: r.days })),
    get('coverage', params({ days: r.days })),
    get('metered', params({ by, days: r.days, limit: '20' })),
    get('alerts'),
    get('budgets'),
  ]);

  draw('daily', {
    type: 'bar',
    data: { labels: daily.days, datasets: daily.series.map((s, i) => dataset(s.key, s.cost_usd, i)) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
  draw('by', {
    type: 'bar',
    data: { labels: spend.lines.map((l) => l.key), datasets: [dataset('cost (USD)', spend.lines.map((l) => l.cost_usd), 0)] },
    options: { indexAxis: 'y', plugins: { legend: { display: false } } },
  });
  draw('trend', {
    type: 'line',
    data: { labels: trend.days, datasets: [dataset('cost (USD)', trend.cost_usd, 0, { fill: true, backgroundColor: 'rgba(47,111,222,.15)', tension: 0.2 })] },
    options: { scales: { y: { beginAtZero: true } }, plugins: { legend: { display: false } } },
  });

  $('kpi-total').textContent = money(trend.total_usd);
  $('kpi-total').title = trend.total_usd + ' USD';
  $('kpi-previous').textContent = money(trend.previous_total_usd);
  $('kpi-previous').title = trend.previous_total_usd + ' USD';
  $('kpi-change').textContent = trend.change_pct === '' ? 'new' : (trend.change_pct.startsWith('-') ? '' : '+') + trend.change_pct + ' %';
  $('kpi-range').textContent = money(coverage.cost_usd);
  $('kpi-range').title = coverage.cost_usd + ' USD';

  fill('table-by', spend.lines.map((l) => [l.key, { text: String(l.events), num: true }, usd(l.cost_usd), { text: String(l.unpriced_events), num: true }]), 'no spend');
  fill('table-movers', movers.movers.map((m) => [m.key, usd(m.current_usd), usd(m.previous_usd), usd(m.delta_usd),
    { text: m.change_pct === '' ? 'new' : m.change_pct + ' %', num: true }]), 'no change');
  fill('table-unpriced', unpriced.models.map((m) => [m.provider, m.model, { text: String(m.events), num: true }, m.first_day, m.last_day]), 'every event was priced');
  $('coverage-overall').textContent = coverage.share_pct === '' ? '' : '(' + coverage.share_pct + ' % of spend fully attributed)';
  fill('table-coverage', coverage.tags.map((c) => [c.tag, { text: String(c.tagged_events), num: true }, usd(c.tagged_usd),
    { text: c.share_pct === '' ? '–' : c.share_pct + ' %', num: true }]), 'no spend');
  $('metered-by').textContent = by;
  fill('table-metered', metered.lines.map((l) => [l.key, { text: String(l.events), num: true }, { text: String(l.estimated_events), num: true }, usd(l.estimated_usd),
    { text: l.metered_share_pct === '' ? '–' : l.metered_share_pct + ' %', num: true }]), 'no calls');
  fill('table-alerts', alerts.alerts.map((a) => [{ text: a.state, cls: 'state-' + a.state }, a.rule, a.summary, a.value, a.since]), 'no active alerts');
  fill('table-budgets', budgets.budgets.map((b) => [b.name, b.state, usd(b.spent_usd), usd(b.forecast_usd), usd(b.limit_usd), b.period_start]), 'no budgets');
}

let generation = 0;

async function update(withOptions) {
  document.body.dataset.state = 'loading';
  try {
    if (withOptions) await loadOptions();
    await refresh();
    $('error').hidden = true;
    document.body.dataset.state = 'ready';
  } catch (err) {
    $('error').textContent = String(err.message || err);
    $('error').hidden = false;
    document.body.dataset.state = 'error';
  }
  document.body.dataset.generation = String(++generation);
}

for (const d of dims) $('filter-' + d).addEventListener('change', () => update(false));
$('by').addEventListener('change', () => update(false));
$('range').addEventListener('change', () => update(true));
update(true);
