"""The fund view's HTML: one Jinja template (autoescaped), the sections' charts and tables."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fund operations</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="static/plotly.min.js"></script>
<style>
 body { font-family: system-ui, sans-serif; margin: 0; color: #1a202c; background: #f7fafc; }
 header { background: #017cee; color: white; padding: 10px 20px; }
 header h1 { margin: 0; font-size: 20px; }
 nav a { color: white; margin-right: 14px; font-size: 14px; }
 form.filters { background: white; padding: 10px 20px; border-bottom: 1px solid #e2e8f0; display: flex; gap: 12px;
                flex-wrap: wrap; align-items: end; font-size: 14px; }
 form.filters label { display: flex; flex-direction: column; gap: 2px; }
 section { background: white; margin: 16px 20px; padding: 12px 16px; border-radius: 6px;
           box-shadow: 0 1px 2px rgba(0,0,0,.08); }
 section h2 { margin: 0 0 8px 0; font-size: 18px; }
 .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 8px; }
 table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
 th, td { border-bottom: 1px solid #e2e8f0; padding: 3px 8px; text-align: right; white-space: nowrap; }
 th { background: #edf2f7; } td:first-child, th:first-child { text-align: left; }
 .empty { color: #718096; font-style: italic; }
 .status-ok { color: #2f855a; font-weight: 600; } .status-bad { color: #c53030; font-weight: 600; }
 .download { font-size: 13px; margin-left: 8px; }
</style></head>
<body>
<span id="applied" hidden data-start="{{ f.start }}" data-end="{{ f.end }}" data-product="{{ f.product or '' }}"
 data-currency="{{ f.currency or '' }}" data-account="{{ account }}"></span>
<header><h1>Fund operations</h1>
 <nav>{% for id, title in nav %}<a href="#{{ id }}">{{ title }}</a>{% endfor %}</nav></header>
<form class="filters" method="get" action="">
 <label>From <input type="date" name="start" value="{{ f.start }}"></label>
 <label>To <input type="date" name="end" value="{{ f.end }}"></label>
 <label>Product <select name="product"><option value="">all</option>
  {% for p in products %}<option value="{{ p.product_id }}" {% if p.product_id == f.product %}selected{% endif %}>
  {{ p.product }} ({{ p.currency }})</option>{% endfor %}</select></label>
 <label>Currency <select name="currency"><option value="">all</option>
  {% for c in currencies %}<option value="{{ c }}" {% if c == f.currency %}selected{% endif %}>{{ c }}</option>
  {% endfor %}</select></label>
 <label>Spread on <input type="date" name="day" value="{{ d.performance.day }}"></label>
 <label>Account <input type="search" name="account" value="{{ account }}" placeholder="account id" size="38"></label>
 <button type="submit">Show</button>
</form>

{% macro render_table(t, name) %}
 {% if t.rows %}
 <details><summary>Table ({{ t.rows|length }} rows)</summary>
 <table data-table="{{ name }}"><thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
 <tbody>{% for r in t.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
 </details>
 <a class="download" href="csv/{{ name }}?{{ query }}">CSV</a>
 {% else %}<p class="empty">Nothing in this range.</p>{% endif %}
{% endmacro %}
{% macro render_charts(charts, name) %}
 <div class="charts">{% for c in charts %}<div class="chart" id="{{ name }}-chart-{{ loop.index }}"
   data-figure='{{ c }}'></div>{% endfor %}</div>
{% endmacro %}

<section id="book"><h2>Book</h2>
 <p>Accounts on the last day: <b data-figure-name="accounts">{{ d.book.summary.accounts_on_last_day }}</b></p>
 {{ render_charts(d.book.charts, "book") }}{{ render_table(d.book.table, "book") }}</section>

<section id="performance"><h2>Performance</h2>
 {{ render_charts(d.performance.charts, "performance") }}{{ render_table(d.performance.table, "performance") }}
 <h3>Best and worst accounts on {{ d.performance.day }}</h3>{{ render_table(d.performance.extremes, "spread") }}
</section>

<section id="distributions"><h2>Distributions</h2>
 {{ render_charts(d.distributions.charts, "distributions") }}{{ render_table(d.distributions.table, "distributions") }}
</section>

<section id="payouts"><h2>Payouts</h2>
 {{ render_charts(d.payouts.charts, "payouts") }}{{ render_table(d.payouts.table, "payouts") }}
 <h3>Waiting for a person: {{ d.payouts.waiting_count }}</h3>
 {% if d.payouts.waiting_count %}<p><a href="{{ required_actions }}" target="_top">Open the Required Actions that
 resolve them</a> (withdrawal_processing: <i>review_withdrawals</i> and <i>resolve_operator_case</i>)</p>{% endif %}
 {{ render_table(d.payouts.waiting, "waiting") }}
</section>

<section id="quality"><h2>Data quality</h2>
 {{ render_charts(d.quality.charts, "quality") }}{{ render_table(d.quality.table, "quality") }}
 <h3>Months held back</h3>{{ render_table(d.quality.held, "held") }}
</section>

<section id="jobs"><h2>Jobs</h2>
 <p>Health: <span class="{{ 'status-ok' if d.jobs.status == 'ok' else 'status-bad' }}">{{ d.jobs.status }}</span>
 (the <a href="/health/jobs" target="_blank">/health/jobs</a> rule)</p>
 <table data-table="jobs"><thead><tr>{% for c in d.jobs.table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
 <tbody>{% for r in d.jobs.table.rows %}<tr><td><a href="/dags/{{ r[0] }}" target="_top">{{ r[0] }}</a></td>
 <td class="{{ 'status-ok' if r[1] == 'ok' else 'status-bad' }}">{{ r[1] }}</td>{% for v in r[2:] %}<td>{{ v }}</td>
 {% endfor %}</tr>{% endfor %}</tbody></table>
</section>

<section id="account"><h2>An account</h2>
 {% if not d.account %}<p class="empty">Search an account by its id above.</p>
 {% elif not d.account.found %}<p class="empty">No account {{ d.account.searched }}.</p>
 {% else %}
 <table data-table="account-facts">{% for k, v in d.account.facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
 {% endfor %}</table>
 {{ render_charts(d.account.charts, "account") }}
 <h3>Daily series</h3>{{ render_table(d.account.days, "account-days") }}
 <h3>Distributions</h3>{{ render_table(d.account.distributions, "account-distributions") }}
 <h3>Withdrawals</h3>{{ render_table(d.account.withdrawals, "account-withdrawals") }}
 <h3>Transactions</h3>{{ render_table(d.account.transactions, "account-transactions") }}
 {% endif %}
</section>
<script>
 for (const div of document.querySelectorAll("div.chart")) {
   const fig = JSON.parse(div.dataset.figure);
   Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
 }
 document.body.dataset.chartsDrawn = document.querySelectorAll("div.chart .plot-container").length;
</script>
</body></html>
"""

NAV = (("book", "Book"), ("performance", "Performance"), ("distributions", "Distributions"), ("payouts", "Payouts"),
       ("quality", "Data quality"), ("jobs", "Jobs"), ("account", "Account"))


def render(data: dict[str, Any], f: Any, products: list[dict[str, Any]], account: str) -> str:
    from jinja2 import Environment

    query = urlencode({k: v for k, v in (("start", f.start), ("end", f.end), ("product", f.product),
                                        ("currency", f.currency), ("day", data["performance"]["day"]),
                                        ("account", account)) if v})
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        d=data, f=f, products=products, currencies=sorted({p["currency"] for p in products}), account=account,
        nav=NAV, query=query, required_actions="/required_actions?response_received=false")
