"""The Grafana dashboard (deploy/grafana/dashboard.json) outside Grafana: its panels' queries, run against a
Prometheus, and a matplotlib picture of the panels drawn from the same queries.

`panels()` reads the dashboard; `expand()` fills Grafana's variables into a query the way Grafana does for the
defaults (`$model` = every model, `$__rate_interval` = `rate_interval`); `render()` draws every panel's range
query into one PNG (deploy/grafana/dashboard.png in the README). matplotlib (the `bench` extra) is imported
only by `render`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from toolkit.monitor.prometheus import PrometheusApi, Series
from toolkit.paths import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
PICTURE = ROOT / "deploy" / "grafana" / "dashboard.png"
ALL_MODELS = ".+"  # the dashboard's `allValue` of $model


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: list[Target]


def load(path: str | Path = DASHBOARD) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def panels(dashboard: dict) -> list[Panel]:
    """Every panel of the dashboard (rows flattened) with its unit and Prometheus targets."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            targets = [Target(t["expr"], t.get("legendFormat", "")) for t in inner.get("targets", []) if "expr" in t]
            if targets:
                unit = inner.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
                found.append(Panel(inner["title"], unit, targets))
    return found


def expand(expr: str, model: str = ALL_MODELS, rate_interval: str = "1m") -> str:
    """`expr` with Grafana's variables filled in: $model / ${model}, $__rate_interval / $__interval."""
    expr = re.sub(r"\$\{?__rate_interval\}?|\$\{?__interval\}?", rate_interval, expr)
    return re.sub(r"\$\{?model\}?", model, expr)


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: `{{label}}` replaced by the series' label value."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip()
    return text or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def panel_series(api: PrometheusApi, panel: Panel, start: float, end: float, step_s: float,
                 rate_interval: str = "1m") -> list[tuple[str, Series]]:
    """(legend, series) of every target of `panel`, as range queries."""
    return [
        (legend(target.legend, series.labels), series)
        for target in panel.targets
        for series in api.query_range(expand(target.expr, rate_interval=rate_interval), start, end, step_s)
    ]


def render(api: PrometheusApi, out: str | Path = PICTURE, minutes: float = 10.0, step_s: float = 5.0,
           rate_interval: str = "1m", dashboard: dict | None = None) -> Path:
    """Draw every panel's range queries over the last `minutes` into `out` (PNG), three panels a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = dashboard or load()
    shown = panels(dashboard)
    end = time.time()
    start = end - 60 * minutes
    cols = 3
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.4 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, shown, strict=False):
        for name, series in panel_series(api, panel, start, end, step_s, rate_interval):
            xs = [(t - end) / 60 for t, _ in series.points]
            ax.plot(xs, [v for _, v in series.points], label=name, linewidth=1.4)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("minutes before now", fontsize=8)
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(dashboard.get("title", "dashboard"), fontsize=12)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
