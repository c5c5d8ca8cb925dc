"""report.html's interactive parts: plotly fronts (overview, one panel per comparison, closeness to θ0), the
generations behind every point (a weight slider; clicking a point picks its weight) and the points table sortable
and filterable by front.

Everything is read from the run's cache (points and samples); nothing is computed that the report does not already
hold. The page stays one self-contained file: plotly's own script is embedded once (no CDN), the figures are plain
divs. Generated text travels as JSON inside a `<script type="application/json">` block with `<`, `>` and `&` written
as \\u escapes, and is put on the page with `textContent`, never as markup.
"""
from __future__ import annotations

import html
import json

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from ..sweep.variants import BASE
from .data import RunData, load_samples

# Prompts shown side by side per weight in the generations explorer (the first ones of the evaluation set).
EXPLORE_PROMPTS = 12
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
REFERENCE_COLORS = ["#555555", "#a0a0a0", "#7a5230", "#c8a060"]  # the single policies: never a front's colour
SYMBOLS = ["circle", "square", "triangle-up", "triangle-down", "diamond", "cross", "x", "pentagon", "hexagon"]
CONFIG = {"displaylogo": False, "responsive": True}


def json_for_script(value) -> str:
    """JSON safe inside a <script> element: no `</script>`, no comment or CDATA openers can form."""
    return (json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def weight_label(weights) -> str:
    return "/".join(f"{w:g}" for w in weights)


def _interval(o: dict) -> str:
    return f"{o['mean']:.4g} ± {o['stderr']:.3g} (95% {o['mean'] - 1.96 * o['stderr']:.4g} … " \
           f"{o['mean'] + 1.96 * o['stderr']:.4g})"


def hover(data: RunData, label: str, p: dict) -> str:
    """A point's hover text: front, variant and candidate (β or λ), weights, α, rewards with intervals, metrics."""
    applied = p.get("lines_applied") or {}
    lines_block = p["merge"].get("lines") or {}
    rows = [f"<b>{html.escape(label)}</b>", f"variant: {html.escape(p['variant'])}"
            + (f" ({html.escape(p['candidate'])})" if p["candidate"] else "")]
    if len(p["weights"]) == len(data.rewards):
        rows.append("weights " + "/".join(data.rewards) + ": " + weight_label(p["weights"]))
    if applied:
        rows.append(f"β {lines_block.get('beta', 0):g}, α {applied['alpha']:.4g}"
                    + (f", λ(ℓ) {applied['block_scales'][0]:.3g} … {applied['block_scales'][-1]:.3g}"
                       if applied.get("block_scales") else ""))
    rows += [f"{html.escape(n)}: {_interval(p['objectives'][n])}" for n in data.rewards + data.metrics]
    return "<br>".join(rows)


def _weights_index(data: RunData) -> list[tuple]:
    """Every weight vector the fronts were swept over, in the order of the first reward's weight."""
    seen = {tuple(p["weights"]) for pts in data.fronts().values() for p in pts}
    return sorted(seen, key=lambda w: (-w[0], w))


def _front_trace(data: RunData, name: str, pts: list[dict], c: int, x: str, y: str, weights: list[tuple],
                 showlegend: bool = True, group: str | None = None) -> go.Scatter:
    """One front as a line with ±1 s.e. bars; customdata carries each point's weight index (for clicks)."""
    def value(p, q, key):
        return p["weights"][0] if q == "weight" else p["objectives"][q][key]
    return go.Scatter(
        x=[value(p, x, "mean") for p in pts], y=[value(p, y, "mean") for p in pts], mode="lines+markers", name=name,
        legendgroup=group or name, showlegend=showlegend,
        marker={"color": PALETTE[c % len(PALETTE)], "symbol": SYMBOLS[c % len(SYMBOLS)], "size": 8},
        line={"color": PALETTE[c % len(PALETTE)], "width": 1.5},
        error_x=None if x == "weight" else {"array": [value(p, x, "stderr") for p in pts], "thickness": 1,
                                             "width": 2},
        error_y={"array": [value(p, y, "stderr") for p in pts], "thickness": 1, "width": 2},
        customdata=[weights.index(tuple(p["weights"])) for p in pts],
        hovertext=[hover(data, name, p) for p in pts], hoverinfo="text")


def _reference_traces(data: RunData, x: str, y: str, showlegend: bool = True) -> list[go.Scatter]:
    out = []
    for k, (label, p) in enumerate(data.references().items()):
        theta = p["variant"] == BASE
        out.append(go.Scatter(
            x=[p["objectives"][x]["mean"]], y=[p["objectives"][y]["mean"]], mode="markers", name=label,
            legendgroup=label, showlegend=showlegend,
            marker={"symbol": "star" if theta else "diamond", "size": 16 if theta else 11,
                    "color": "black" if theta else REFERENCE_COLORS[(k - 1) % len(REFERENCE_COLORS)],
                    "line": {"color": "white", "width": 1}},
            hovertext=[hover(data, label, p)], hoverinfo="text"))
    return out


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int) -> None:
    fig.update_layout(title={"text": html.escape(title), "font": {"size": 14}}, height=height,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, hovermode="closest", template="plotly_white",
                      legend={"font": {"size": 11}})
    fig.update_xaxes(title_text=html.escape(x))
    fig.update_yaxes(title_text=html.escape(y))


def front_figures(data: RunData) -> list[tuple[str, str, go.Figure]]:
    """(div id, caption, figure): the all-fronts overview, one panel per comparison of the verdict (its two fronts,
    θ0 and the single policies), then one closeness-to-θ0 panel per metric against the first reward's weight."""
    rewards, fronts = data.rewards, data.fronts()
    x, y = rewards[0], rewards[1] if len(rewards) > 1 else rewards[0]
    weights = _weights_index(data)
    colour = {name: c for c, name in enumerate(fronts)}
    out = []
    overview = go.Figure([_front_trace(data, n, pts, colour[n], x, y, weights) for n, pts in fronts.items()]
                         + _reference_traces(data, x, y))
    _layout(overview, f"All fronts: {x} vs {y} (±1 s.e.; click a point to read its generations)", x, y, 560)
    out.append(("fronts-overview", "Every front, θ0 (★) and the single policies (◆). Click a legend entry to hide "
                "or show it; drag to zoom, double-click to reset.", overview))
    comparisons = data.comparisons()
    if comparisons:
        cols = min(3, len(comparisons))
        rows = -(-len(comparisons) // cols)
        grid = make_subplots(rows=rows, cols=cols, subplot_titles=[html.escape(f"{a} vs {b}") for a, b in comparisons],
                             horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.1)
        shown = set()
        for i, (a, b) in enumerate(comparisons):
            r, c = i // cols + 1, i % cols + 1
            for name in (a, b):
                grid.add_trace(_front_trace(data, name, fronts[name], colour[name], x, y, weights,
                                            showlegend=name not in shown), row=r, col=c)
                shown.add(name)
            for trace in _reference_traces(data, x, y, showlegend=i == 0):
                grid.add_trace(trace, row=r, col=c)
            grid.update_xaxes(title_text=html.escape(x), row=r, col=c)
            grid.update_yaxes(title_text=html.escape(y), row=r, col=c)
        grid.update_layout(height=430 * rows, margin={"l": 60, "r": 20, "t": 60, "b": 50}, hovermode="closest",
                           template="plotly_white", legend={"font": {"size": 11}})
        out.append(("fronts-comparisons", "One panel per comparison the verdict makes: the LiNeS front and the "
                    "front it is compared with, θ0 and the single policies. A legend entry hides that front in "
                    "every panel.", grid))
    for m, metric in enumerate(data.metrics):
        fig = go.Figure([_front_trace(data, n, pts, colour[n], "weight", metric, weights)
                         for n, pts in fronts.items()])
        for label, p in data.references().items():
            fig.add_hline(y=p["objectives"][metric]["mean"], line_dash="dot", line_width=1,
                          line_color="black" if p["variant"] == BASE else "grey",
                          annotation_text=html.escape(label), annotation_font_size=10)
        better = "higher" if data.points[0]["objectives"][metric]["higher_is_better"] else "lower"
        _layout(fig, f"Closeness to θ0: {metric} ({better} is better; dotted: θ0 and the single policies)",
                f"weight of {x}", metric, 420)
        out.append((f"closeness-{m}", "", fig))
    return out


def generations(data: RunData, n_prompts: int = EXPLORE_PROMPTS) -> dict:
    """What the explorer shows, from the cached samples: for every weight and every front, the first sample of
    each of the first `n_prompts` prompts with that prompt's reward values (per-prompt means of the point)."""
    weights = _weights_index(data)
    fronts = data.fronts()
    columns = {name: {} for name in fronts}
    prompts: dict[str, str] = {}
    for name, pts in fronts.items():
        for p in pts:
            cells = _cells(data, p, n_prompts, prompts)
            if cells is not None:
                columns[name][str(weights.index(tuple(p["weights"])))] = cells
    references = {}
    for label, p in data.references().items():
        cells = _cells(data, p, n_prompts, prompts)
        if cells is not None:
            references[label] = cells
    return {"weights": [weight_label(w) for w in weights], "rewards": data.rewards, "fronts": list(fronts),
            "columns": columns, "references": references, "prompts": prompts}


def _cells(data: RunData, p: dict, n_prompts: int, prompts: dict) -> dict | None:
    rows = load_samples(data, p["gen_key"])  # checked as the cache checks it; a damaged file is one line
    if rows is None:
        return None
    first: dict[str, dict] = {}
    for row in rows:
        first.setdefault(row["prompt_id"], row)
    index = {pid: i for i, pid in enumerate(p.get("prompt_ids") or [])}
    out = {}
    for pid in list(first)[:n_prompts]:
        prompts.setdefault(pid, first[pid]["prompt"])
        values = {r: p["objectives"][r]["per_prompt"][index[pid]] for r in data.rewards
                  if pid in index and p["objectives"][r].get("unit", "prompt") == "prompt"}
        out[pid] = {"response": first[pid]["response"], "rewards": values}
    return out


EXPLORER = """
<div id="explorer">
<p><label for="weight-slider">weight (<span id="weight-rewards"></span>):
<b id="weight-value"></b></label><br>
<input type="range" id="weight-slider" min="0" step="1" style="width:60%"></p>
<p id="generations-columns" class="figure-note">Columns: </p>
<div id="generations" style="overflow-x:auto"></div>
</div>
"""

SCRIPT = """
(function(){
const G = JSON.parse(document.getElementById('generations-data').textContent);
const slider = document.getElementById('weight-slider');
slider.max = G.weights.length - 1;
slider.value = Math.floor((G.weights.length - 1) / 2);
document.getElementById('weight-rewards').textContent = G.rewards.join('/');
function el(tag, text, cls){ const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; }
function fmt(v){ return (typeof v === 'number') ? v.toPrecision(4) : ''; }
function cell(c){
  const td = el('td');
  if (!c) { td.textContent = '–'; return td; }
  td.appendChild(el('div', c.response, 'response'));
  td.appendChild(el('div', G.rewards.filter(r => r in c.rewards).map(r => r + ' ' + fmt(c.rewards[r])).join(', '),
                    'scores'));
  return td;
}
const cols = document.getElementById('generations-columns');
const shown = {};
G.fronts.concat(Object.keys(G.references)).forEach(name => {
  shown[name] = true;
  const label = el('label'); const box = el('input'); box.type = 'checkbox'; box.checked = true;
  box.dataset.column = name;
  box.addEventListener('change', () => { shown[name] = box.checked; show(Number(slider.value)); });
  label.appendChild(box); label.appendChild(document.createTextNode(' ' + name + ' '));
  cols.appendChild(label);
});
function show(i){
  slider.value = i;
  document.getElementById('weight-value').textContent = G.weights[i];
  const table = el('table'); table.id = 'generations-table';
  const head = el('tr'); head.appendChild(el('th', 'prompt'));
  const fronts = G.fronts.filter(f => shown[f]), refs = Object.keys(G.references).filter(r => shown[r]);
  fronts.forEach(f => head.appendChild(el('th', f + ' at ' + G.weights[i])));
  refs.forEach(r => head.appendChild(el('th', r)));
  const thead = el('thead'); thead.appendChild(head); table.appendChild(thead);
  const body = el('tbody');
  Object.keys(G.prompts).forEach(pid => {
    const tr = el('tr'); tr.dataset.prompt = pid;
    tr.appendChild(el('td', G.prompts[pid], 'prompt'));
    fronts.forEach(f => { const col = G.columns[f][String(i)]; tr.appendChild(cell(col && col[pid])); });
    refs.forEach(r => tr.appendChild(cell(G.references[r][pid])));
    body.appendChild(tr);
  });
  table.appendChild(body);
  const box = document.getElementById('generations'); box.replaceChildren(table);
  box.dataset.weight = G.weights[i];
}
slider.addEventListener('input', () => show(Number(slider.value)));
document.querySelectorAll('.js-plotly-plot').forEach(gd => gd.on && gd.on('plotly_click', ev => {
  const p = ev.points && ev.points[0];
  if (p && typeof p.customdata === 'number') {
    show(p.customdata);
    document.getElementById('explorer').scrollIntoView({behavior: 'smooth'});
  }
}));
show(Number(slider.value));
})();
"""

TABLES = """
(function(){
function key(text){ const n = Number(text); return (text.trim() !== '' && !isNaN(n)) ? [0, n] : [1, text]; }
document.querySelectorAll('table').forEach((table, t) => {
  if (table.id === 'generations-table') return;
  const heads = Array.from(table.querySelectorAll('thead th'));
  const body = table.tBodies[0];
  if (!body) return;
  heads.forEach((th, col) => {
    th.style.cursor = 'pointer'; th.title = 'sort';
    th.addEventListener('click', () => {
      const dir = th.dataset.sort === 'asc' ? -1 : 1;
      heads.forEach(h => delete h.dataset.sort); th.dataset.sort = dir > 0 ? 'asc' : 'desc';
      const rows = Array.from(body.rows);
      rows.sort((a, b) => { const x = key(a.cells[col].textContent), y = key(b.cells[col].textContent);
        return dir * (x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0)); });
      rows.forEach(r => body.appendChild(r));
    });
  });
  if (heads.length && heads[0].textContent === 'front' && heads.some(h => h.textContent === 'variant')) {
    table.id = table.id || 'points-table';
    const select = document.createElement('select'); select.id = 'front-filter';
    const fronts = Array.from(new Set(Array.from(body.rows).map(r => r.cells[0].textContent)));
    [''].concat(fronts).forEach(f => { const o = document.createElement('option'); o.value = f;
      o.textContent = f || 'every front'; select.appendChild(o); });
    select.addEventListener('change', () => Array.from(body.rows).forEach(r =>
      r.style.display = (!select.value || r.cells[0].textContent === select.value) ? '' : 'none'));
    const label = document.createElement('p'); label.textContent = 'Show the points of: ';
    label.appendChild(select);
    // Standard errors and counts hidden until asked for: the means, weights, α and λ(ℓ) fit the page.
    const detail = heads.map((h, i) => /_(stderr|n)$/.test(h.textContent) ? i : -1).filter(i => i >= 0);
    const toggle = document.createElement('input'); toggle.type = 'checkbox'; toggle.id = 'points-detail';
    function details(){ const d = toggle.checked ? '' : 'none';
      detail.forEach(i => { heads[i].style.display = d; Array.from(body.rows).forEach(r => r.cells[i].style.display = d); }); }
    toggle.addEventListener('change', details);
    const toggleLabel = document.createElement('label'); toggleLabel.appendChild(toggle);
    toggleLabel.appendChild(document.createTextNode(' standard errors and counts'));
    label.appendChild(document.createTextNode(' '));
    label.appendChild(toggleLabel);
    const note = document.createElement('span');
    note.textContent = ' (click a column header to sort; points.csv holds the same numbers)';
    label.appendChild(note);
    table.classList.add('points');
    const scales = heads.findIndex(h => h.textContent === 'lambda_blocks');
    if (scales >= 0) Array.from(body.rows).forEach(r => r.cells[scales].classList.add('wrap'));
    details();
    table.parentNode.insertBefore(label, table);
  }
});
})();
"""

STYLE = ("#generations td{vertical-align:top;white-space:normal;min-width:14em;max-width:28em}"
         "#generations td.prompt{font-style:italic;min-width:10em;position:sticky;left:0;background:#fff}"
         "#generations-columns label{margin-right:.8em;white-space:nowrap}"
         "#generations .scores{color:#555;font-size:11px;margin-top:4px}"
         "th[data-sort=asc]::after{content:' ▲'}th[data-sort=desc]::after{content:' ▼'}"
         "table.points{max-height:80vh;overflow:auto}table.points thead th{position:sticky;top:0;background:#fff}"
         "table.points td.wrap{white-space:normal;word-break:break-all;min-width:12em}"
         "table tr:nth-child(even){background:#fafafa}.figure-note{color:#444;font-size:13px}")


def plotly_script() -> str:
    """plotly.js itself, to embed once in the page's head (the page works offline)."""
    return f"<script>{get_plotlyjs()}</script>"


def figure_div(div_id: str, fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)


def fronts_html(data: RunData) -> str:
    """The interactive fronts and the generations explorer: the block that takes the static figure's place."""
    parts = []
    for div_id, caption, fig in front_figures(data):
        parts.append(figure_div(div_id, fig))
        if caption:
            parts.append(f"<p class='figure-note'>{html.escape(caption)}</p>")
    parts.append("<h3>Generations behind the points</h3>"
                 "<p class='figure-note'>Pick a weight with the slider, or click a point of a front: the same "
                 "prompts' responses from every front at that weight, from the sweep's cached samples (the first "
                 "sample of each prompt), with that prompt's reward values; θ0 and the single policies on the "
                 "right. Tick the columns to compare, e.g. just the two fronts of one comparison.</p>")
    parts.append(EXPLORER)
    parts.append(f"<script type='application/json' id='generations-data'>{json_for_script(generations(data))}"
                 "</script>")
    return "\n".join(parts)


def page_scripts(explorer: bool) -> str:
    """Scripts run at the end of the page: the explorer's (when the page has one) and the tables'."""
    return (f"<script>{SCRIPT}</script>" if explorer else "") + f"<script>{TABLES}</script>"


def forest_html(pooled_hv: list[dict], pooled_metrics: list[dict], metrics: list[str], level: float) -> str:
    """The study's differences as an interactive forest plot: for every comparison, each seed's difference (one
    colour per seed: click a seed in the legend to hide it) and the pooled estimate with its interval; one panel for
    the hypervolume, one per closeness metric."""
    panels = [("hypervolume difference (higher: LiNeS better)", pooled_hv)]
    panels += [(f"{m} difference (lower: LiNeS closer to θ0)", [r for r in pooled_metrics if r["metric"] == m])
               for m in metrics]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[html.escape(t) for t, _ in panels],
                        shared_yaxes=True, horizontal_spacing=0.03)
    pct = int(round(level * 100))
    seeds = list(pooled_hv[0]["per_seed"]) if pooled_hv else []
    for col, (_, rows) in enumerate(panels, start=1):
        labels = [html.escape(f"{r['a']} − {r['b']}") for r in rows]
        fig.add_trace(go.Scatter(
            x=[r["estimate"] for r in rows], y=labels, mode="markers", name=f"pooled ({pct}% interval)",
            legendgroup="pooled", showlegend=col == 1, marker={"symbol": "square", "size": 10, "color": "black"},
            error_x={"type": "data", "symmetric": False, "array": [r["high"] - r["estimate"] for r in rows],
                     "arrayminus": [r["estimate"] - r["low"] for r in rows], "thickness": 2, "width": 6},
            hovertext=[f"{label}<br>pooled {r['estimate']:+.4g} ({pct}% CI {r['low']:+.4g} … {r['high']:+.4g})"
                       for label, r in zip(labels, rows)], hoverinfo="text"), row=1, col=col)
        for k, seed in enumerate(seeds):
            fig.add_trace(go.Scatter(
                x=[r["per_seed"][seed] for r in rows], y=labels, mode="markers", name=f"seed {seed}",
                legendgroup=f"seed {seed}", showlegend=col == 1,
                marker={"size": 8, "color": PALETTE[k % len(PALETTE)], "opacity": 0.8},
                hovertext=[f"{label}<br>seed {seed}: {r['per_seed'][seed]:+.4g}" for label, r in zip(labels, rows)],
                hoverinfo="text"), row=1, col=col)
        fig.add_vline(x=0, line_color="grey", line_width=1, row=1, col=col)
    rows = max((len(r) for _, r in panels), default=1)
    fig.update_layout(height=160 + 45 * rows, margin={"l": 180, "r": 20, "t": 60, "b": 40}, hovermode="closest",
                      template="plotly_white", legend={"orientation": "h", "y": -0.15})
    fig.update_yaxes(autorange="reversed")
    return figure_div("study-forest", fig) + (
        "<p class='figure-note'>Each seed's difference (dots; click a seed in the legend to hide it) and the pooled "
        f"difference with its {pct}% interval (black). Hover for the numbers; drag to zoom.</p>")
