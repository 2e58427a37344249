"""The monitoring report: one self-contained HTML page for a monitoring result.

The page opens with what a person needs first (the status, what changed, what to do, the
alarms), then the evidence: drift per input, trends across runs, live quality, data quality
and the service. It needs no network: the CSS is inline and the charts (charts.py) are inline
SVG. Every string from the result is escaped, since feature values and field names come from
production data. Sections carry an id and charts a data-plot attribute, which tests look for.
The page's CSS is report_style.py's.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from model_artifacts.monitoring import charts
from model_artifacts.monitoring.quality import SLICE_MIN_LABELED
from model_artifacts.monitoring.report_style import CSS

STATUS = {  # status -> (label, tone)
    "healthy": ("Healthy", "good"),
    "alarm": ("Alarm", "bad"),
    "insufficient": ("Not enough data", "warn"),
    "no_data": ("No data", "none"),
}
STATE = {"ALARM": ("alarm", "bad"), "OK": ("ok", "good"), "INSUFFICIENT_DATA": ("no data", "none")}
SECTIONS = (  # id, title in the navigation
    ("summary", "Summary"),
    ("alarms", "Alarms"),
    ("drift", "Drift"),
    ("trends", "Over time"),
    ("quality", "Live quality"),
    ("data-quality", "Data quality"),
    ("service", "Service"),
    ("how-to-read", "How to read"),
)
METRICS = ("roc_auc", "accuracy", "f1", "log_loss")
BASELINE = {  # result["baseline"]["status"] -> what it means (run.py's resolve_baseline)
    "version": "carried by the version",
    "kept": "computed by an earlier run, kept",
    "computed": "computed now from its training data",
    "missing": "missing",
}


def render(result: dict[str, Any]) -> str:
    """The report page for a monitoring result (run.py's `monitor`)."""
    summary = result.get("summary") or {}
    status = summary.get("status") or "no_data"
    title = f"{result.get('model', 'model')}: {STATUS.get(status, (status,))[0]}"
    body = "".join(
        (
            _header(result),
            _nav(),
            '<main class="wrap">',
            _summary(result),
            _alarms(result),
            _drift(result),
            _trends(result),
            _quality(result),
            _data_quality(result),
            _service(result),
            "</main>",
            _footer(result),
        )
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · inferline monitoring</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


# -- header and summary -----------------------------------------------------------------------


def _header(result: dict[str, Any]) -> str:
    champion, window = result.get("champion") or {}, result.get("window") or {}
    baseline = result.get("baseline") or {}
    trained = _since(champion.get("trained_at"), champion.get("age_days"))
    serving = _since(champion.get("serving_since"), champion.get("serving_days"))
    hours = window.get("hours")
    span = f"{_when(window.get('since')).removesuffix(' UTC')} → {_when(window.get('until'))}"
    status = baseline.get("status") or "unknown"
    baseline_text = _e(BASELINE.get(status, status))
    if baseline.get("source"):
        baseline_text += f'<span class="sub">{_e(baseline["source"])}</span>'
    if baseline.get("message"):
        message = str(baseline["message"])  # in full in the summary and the drift section
        short = message if len(message) <= 140 else message[:139] + "…"
        baseline_text += f'<span class="sub warn-text" title="{_e(message)}">{_e(short)}</span>'
    meta = [
        (
            "Champion",
            f"version {_e(champion.get('version'))}<span class='sub'>trained {_e(trained)}</span>"
            f"<span class='sub'>serving since {_e(serving)}</span>",
        ),
        ("Window", f"{_e(span)}<span class='sub'>{_num(hours, 4, g=True)} hours</span>"),
        (
            "Run",
            f"<code>{_e(result.get('run_id'))}</code><span class='sub'>{_e(_when(result.get('created_at')))}"
            f" · trigger {_e(result.get('trigger'))}</span>",
        ),
        ("Baseline", baseline_text),
    ]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{v}</dd></div>" for k, v in meta)
    return (
        '<header id="header" class="masthead"><div class="wrap">'
        '<p class="eyebrow">inferline · model monitoring report</p>'
        f"<h1>{_e(result.get('model'))}</h1><dl class='meta'>{items}</dl></div></header>"
    )


def _nav() -> str:
    links = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
    return f'<nav class="toc"><div class="wrap">{links}</div></nav>'


def _summary(result: dict[str, Any]) -> str:
    summary = result.get("summary") or {}
    status = summary.get("status") or "no_data"
    label, tone = STATUS.get(status, (status, "none"))
    findings = summary.get("findings") or []
    actions = summary.get("actions") or []
    found = "".join(f"<li>{_e(f)}</li>" for f in findings) or "<li class='muted'>Nothing stood out.</li>"
    nothing = "Nothing to do." if status == "healthy" else "This run suggests no action."
    todo = "".join(f"<li>{_e(a)}</li>" for a in actions) or f"<li class='muted'>{nothing}</li>"
    headline = summary.get("headline") or ""
    return (
        f'<section id="summary" class="card summary tone-{tone}">'
        f'<div class="status-line"><span class="status-badge tone-{tone}">{_e(label)}</span>'
        f'<p class="headline{" long" if len(headline) > 150 else ""}">{_e(headline)}</p></div>'
        f"{_summary_tiles(result)}"
        f'<div class="columns"><div><h3>What changed</h3><ul class="findings">{found}</ul></div>'
        f'<div class="actions"><h3>What to do</h3><ol>{todo}</ol></div></div></section>'
    )


def _summary_tiles(result: dict[str, Any]) -> str:
    quality, drift, alarms = (
        result.get("quality") or {},
        result.get("drift") or {},
        result.get("alarms") or {},
    )
    judged = result.get("judged") or {}
    metric = quality.get("metric") or "metric"
    reference = (quality.get("reference") or {}).get(metric)
    live = (quality.get("live") or {}).get(metric)
    estimated = (quality.get("estimated") or {}).get("value")
    tested = [t for t in (drift.get("features") or {}).values() if t]
    tiles = [
        _tile(
            "Predictions",
            _int(judged.get("rows")),
            f"of version {_e((result.get('champion') or {}).get('version'))}",
        ),
        _tile("With ground truth", _int(quality.get("labeled")), f"{_pct(quality.get('coverage'))} coverage"),
        _tile(
            f"Live {metric}", _num(live), f"reference {_num(reference)}", _alarm_tone(alarms, "metric_drop")
        ),
        _tile(
            f"Estimated {metric}",
            _num(estimated),
            f"CBPE · reference {_num(reference)}",
            _alarm_tone(alarms, "estimated_metric_drop"),
        ),
        _tile(
            "Drifted inputs",
            f"{len(drift.get('drifted') or [])}" if drift else "—",
            f"of {len(tested)} tested" if drift else "no drift tests",
            _alarm_tone(alarms, "drifted_features"),
        ),
        _tile(
            "Prediction drift",
            ("yes" if drift.get("prediction_drifted") else "no") if drift else "—",
            "score or predicted label",
            _alarm_tone(alarms, "prediction_drift"),
        ),
    ]
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _alarms(result: dict[str, Any]) -> str:
    alarms = result.get("alarms") or {}
    order = {"ALARM": 0, "OK": 1}  # then those without data; within a state, ALARMS' order (by kind)
    rows = []
    for key, alarm in sorted(alarms.items(), key=lambda kv: order.get((kv[1] or {}).get("state"), 2)):
        alarm = alarm or {}
        state = alarm.get("state") or "INSUFFICIENT_DATA"
        badges = _badge("new", "bad") if alarm.get("fired") else ""
        if alarm.get("kept"):
            badges += _badge("kept from the last run", "none")
        rows.append(
            [
                f"<strong>{_e(key.replace('_', ' '))}</strong> "
                f"<span class='sub-inline'>{_e(str(alarm.get('kind') or '').replace('_', ' '))}</span>"
                f"<span class='sub'>{_e(alarm.get('description'))}</span>",
                _badge(*STATE.get(state, (state, "none"))) + badges,
                _figure_value(alarm.get("metric"), alarm.get("value")),
                _figure_value(alarm.get("metric"), alarm.get("threshold")),
                _e(STATE.get(alarm.get("previous"), (alarm.get("previous"),))[0]),
                "yes" if alarm.get("retrains") else "no",
            ]
        )
    table = _table(
        ["Alarm", "State", "Value", "Threshold", "Before", "Retrains"],
        rows,
        numeric={2, 3},
        empty="This run evaluated no alarms.",
    )
    return _section(
        "alarms",
        "Alarms",
        "Each alarm as CloudWatch keeps it after this run: in alarm while its figure is at or above "
        "its threshold; a figure the run could not judge leaves the state as it was.",
        table,
    )


# -- drift ------------------------------------------------------------------------------------


def _drift(result: dict[str, Any]) -> str:
    drift = result.get("drift")
    if not drift:
        return _section("drift", "Drift", None, _note(_why_no_drift(result)))
    judged = bool(drift.get("judged"))
    intro = (
        f"{_int(drift.get('tests'))} tests. A distribution drifted when its test's p-value is below "
        f"{_p(drift.get('alpha_each'))} ({_num(drift.get('p_value'), 3)} shared by the tests, Bonferroni) "
        f"and its PSI is at least {_num(drift.get('min_psi'), 3)}."
    )
    body = ""
    if not judged:
        reason = (result.get("judged") or {}).get("reason") or "too few predictions"
        body += _note(f"Shown, not judged: {reason}", "warn")
    body += _legend()
    outputs = [
        ("score", "Score", drift.get("score")),
        ("predicted", "Predicted label", drift.get("predicted")),
    ]
    body += "<h3>Model output</h3><div class='grid grid-3'>"
    body += "".join(
        _distribution_card(key, title, test, judged, wide=key == "score") for key, title, test in outputs
    )
    body += "</div><h3>Model inputs</h3><div class='grid grid-3'>"
    features = _drift_order(drift.get("features") or {})
    body += "".join(_distribution_card(f"feature-{name}", name, test, judged) for name, test in features)
    tests = features + [(f"{title} (model output)", test) for _, title, test in outputs]
    body += "</div><h3>Every test</h3>" + _drift_table(tests, drift, judged)
    return _section("drift", "Drift: the window against the baseline", intro, body)


def _why_no_drift(result: dict[str, Any]) -> str:
    baseline = result.get("baseline") or {}
    rows = (result.get("judged") or {}).get("rows")
    if not rows:
        return "No predictions of the serving version in this window: there is no distribution to compare."
    if baseline.get("status") == "missing":
        return f"No baseline to compare with: {baseline.get('message') or 'the version carries none'}"
    return (result.get("judged") or {}).get("reason") or "No drift tests in this run."


def _drift_order(features: dict[str, Any]) -> list[tuple[str, Any]]:
    """Drifted inputs first, then by PSI, largest first; inputs without a test last."""
    return sorted(
        features.items(),
        key=lambda kv: (kv[1] is None, not (kv[1] or {}).get("drifted"), -((kv[1] or {}).get("psi") or 0.0)),
    )


def _distribution_card(
    key: str, title: str, test: dict[str, Any] | None, judged: bool, *, wide: bool = False
) -> str:
    if not test:
        return (
            f'<figure class="plot empty" data-plot="{_e(key)}">'
            f'<figcaption><span class="name">{_e(title)}</span>'
            f"{_badge('no values', 'none')}</figcaption>"
            "<p class='muted'>No value of this input in the window (all missing), so no test.</p></figure>"
        )
    drifted = bool(test.get("drifted"))
    stats = [
        f"PSI <b>{_num(test.get('psi'), 3)}</b>",
        f"{_test_name(test)} {_num(test.get('statistic'), 3)}",
        f"p {_p(test.get('p_value'))}",
    ]
    if test.get("kind") == "numeric" and test.get("window_mean") is not None:
        stats.append(
            f"mean {_num(test.get('reference_mean'), 3, g=True)} → {_num(test.get('window_mean'), 3, g=True)}"
        )
    classes = "plot" + (" drifted" if drifted else "") + (" span-2" if wide else "")
    return (
        f'<figure class="{classes}" data-plot="{_e(key)}">'
        f'<figcaption><span class="name">{_e(title)}</span>{_verdict(test, judged)}</figcaption>'
        f"{charts.distribution(test, label=title, wide=wide)}"
        f'<p class="stats">{" · ".join(stats)}</p></figure>'
    )


def _legend() -> str:
    return (
        '<p class="legend"><span><i class="swatch window"></i>window</span>'
        '<span><i class="swatch drifted"></i>window, drifted</span>'
        '<span><i class="swatch reference"></i>baseline</span></p>'
    )


def _drift_table(tests: list[tuple[str, Any]], drift: dict[str, Any], judged: bool) -> str:
    """One row per test; the PSI bar is drawn against the largest PSI of the run."""
    largest = max([(t or {}).get("psi") or 0.0 for _, t in tests] + [drift.get("min_psi") or 0.0, 1e-9])
    rows = [_drift_row(name, test, judged, largest) for name, test in tests]
    return _table(
        ["Distribution", "Test", "Statistic", "p-value", "PSI", "Mean: baseline → window", "Rows", "Result"],
        rows,
        numeric={2, 3, 6},
        empty="No model inputs.",
    )


def _drift_row(name: str, test: dict[str, Any] | None, judged: bool, largest: float) -> list[str]:
    if not test:
        return [_e(name), "—", "—", "—", "—", "—", "0", _badge("no values", "none")]
    drifted = bool(test.get("drifted"))
    share = min(1.0, (test.get("psi") or 0.0) / largest) * 100
    bar = (
        f'<span class="bar{" drifted" if drifted else ""}"><i style="width:{share:.0f}%"></i></span>'
        f"{_num(test.get('psi'), 4)}"
    )
    mean = "—"
    if test.get("kind") == "numeric" and test.get("window_mean") is not None:
        mean = f"{_num(test.get('reference_mean'), 4, g=True)} → {_num(test.get('window_mean'), 4, g=True)}"
    return [
        f"<strong>{_e(name)}</strong>" if drifted else _e(name),
        _test_name(test),
        _num(test.get("statistic"), 4, g=True),
        _p(test.get("p_value")),
        bar,
        mean,
        _int(test.get("rows")),
        _verdict(test, judged),
    ]


def _verdict(test: dict[str, Any], judged: bool) -> str:
    if test.get("drifted"):
        return _badge("drifted", "bad")
    return _badge("stable", "good") if judged else _badge("not judged", "none")


def _test_name(test: dict[str, Any]) -> str:
    return {"ks": "KS", "chi2": "χ²"}.get(str(test.get("test")), _e(test.get("test")))


# -- trends -----------------------------------------------------------------------------------


def _trends(result: dict[str, Any]) -> str:
    history = [h for h in result.get("history") or [] if isinstance(h, dict)]
    quality = result.get("quality") or {}
    thresholds = result.get("thresholds") or {}
    metric = quality.get("metric") or "metric"
    if not history:
        return _section("trends", "Over time", None, _note("No run history yet."))
    runs = f"{len(history)} run{'s' if len(history) != 1 else ''}"
    single = " (the first: each line is one point so far)" if len(history) == 1 else ""
    drifted_threshold = (thresholds.get("alarms") or {}).get("drifted_features")
    body = _plot(
        "trend-drift",
        "Feature drift per run",
        charts.drift_trend(
            history, min_psi=thresholds.get("drift_min_psi"), drifted_threshold=drifted_threshold
        ),
        "Left: the largest PSI among the inputs. Right: inputs that drifted (red at the alarm's threshold).",
        wide=True,
    ) + _plot(
        "trend-quality",
        f"{metric} per run: quality before labels arrive",
        charts.quality_trend(history, metric=metric),
        "The estimate (CBPE) needs only scores, so it is there from the first hour; the live metric "
        "follows as ground truth arrives. The dashed line is the serving version's reference.",
        wide=True,
    )
    return _section(
        "trends", "Over time", f"The last {runs} of this model{single}.", f"<div class='grid'>{body}</div>"
    )


# -- live quality -----------------------------------------------------------------------------


def _quality(result: dict[str, Any]) -> str:
    quality = result.get("quality") or {}
    alarms = result.get("alarms") or {}
    metric = quality.get("metric") or "metric"
    live = quality.get("live") or {}
    estimated = quality.get("estimated") or {}
    delay = quality.get("label_delay_hours") or {}
    calibration = quality.get("calibration") or {}
    tiles = [
        _tile(
            f"Live {metric}",
            _num(live.get(metric)),
            _drop_text(quality.get("drop"), "reference"),
            _alarm_tone(alarms, "metric_drop"),
        ),
        _tile(
            f"Estimated {metric}",
            _num(estimated.get("value")),
            _drop_text(estimated.get("drop"), "reference"),
            _alarm_tone(alarms, "estimated_metric_drop"),
        ),
        _tile(
            "Ground truth",
            _pct(quality.get("coverage")),
            f"{_int(quality.get('labeled'))} of {_int(quality.get('rows'))} predictions",
        ),
        _tile("Label delay", _unit(delay.get("p50"), "h"), f"median; p90 {_unit(delay.get('p90'), 'h')}"),
        _tile("Calibration error", _num(calibration.get("ece"), 3), "ECE on labeled predictions"),
    ]
    body = f'<div class="tiles">{"".join(tiles)}</div>'
    if not live and quality.get("rows"):
        body += _note(
            f"The live metric needs {_int(quality.get('min_labeled_rows'))} predictions with ground truth; "
            f"{_int(quality.get('labeled'))} have it so far. The estimate does not wait for labels."
        )
    body += "<div class='grid grid-2-3 align-start'>"
    body += _plot(
        "calibration",
        "Reliability diagram",
        charts.calibration(calibration.get("window") or [], calibration.get("reference") or []),
        "Observed rate against the mean score per score bin; dots sized by predictions. On the "
        "diagonal a score of 0.3 means a 30% chance.",
    )
    body += f"<div class='card inset'><h3>Metrics</h3>{_metrics_table(quality)}</div></div>"
    for field, rows in (quality.get("slices") or {}).items():
        worse = ((result.get("thresholds") or {}).get("alarms") or {}).get("metric_drop")
        body += _slice(str(field), rows or [], quality, worse)
    intro = (
        f"How right the model is on the predictions whose ground truth has arrived, and the "
        f"{_e(metric)} estimated from the scores alone (CBPE) for every prediction."
    )
    return _section("quality", "Live quality", intro, body)


def _metrics_table(quality: dict[str, Any]) -> str:
    metric = quality.get("metric")
    reference = quality.get("reference") or {}
    live = quality.get("live") or {}
    estimated = quality.get("estimated") or {}
    everything, labeled = estimated.get("all") or {}, estimated.get("labeled") or {}
    rows = []
    for name in METRICS:
        cells = [reference.get(name), live.get(name), everything.get(name), labeled.get(name)]
        label = f"<strong>{_e(name)}</strong>" if name == metric else _e(name)
        rows.append([label, *(_num(v) for v in cells)])
    table = _table(
        ["Metric", "Reference", "Live (labeled)", "Estimated (all)", "Estimated (labeled)"],
        rows,
        numeric={1, 2, 3, 4},
    )
    return table + (
        "<p class='muted small'>Estimated on the labeled predictions against live on the same predictions: "
        "how well the estimate tracks reality for this window.</p>"
    )


def _slice(field: str, rows: list[dict[str, Any]], quality: dict[str, Any], worse: float | None) -> str:
    """A slice field's values: the live metric against the reference, as a chart and a table."""
    metric = quality.get("metric") or "metric"
    if not rows:
        return (
            f'<div class="card inset slice" data-slice="{_e(field)}"><h3>By {_e(field)}</h3>'
            f"{_note('No predictions in this window.')}</div>"
        )
    table_rows = []
    for row in rows:
        live, ref = row.get("metric"), row.get("reference")
        delta = live - ref if live is not None and ref is not None else None
        table_rows.append(
            [
                _e(row.get("value")),
                _int(row.get("rows")),
                _int(row.get("labeled")),
                _num(live),
                f"{_num(ref)} <span class='sub-inline'>({_int(row.get('reference_rows'))} rows)</span>"
                if ref is not None
                else "—",
                _signed(delta),
            ]
        )
    table = _table(
        ["Value", "Predictions", "Labeled", f"Live {metric}", "Reference", "Δ"],
        table_rows,
        numeric={1, 2, 3, 4, 5},
        empty="No predictions.",
    )
    if any(r.get("metric") is not None for r in rows):
        higher = quality.get("higher_is_better", True)
        chart = charts.slice_metrics(rows, metric=metric, worse=worse, higher_is_better=higher)
        caption = (
            f"Red: worse than the reference by {_num(worse)} or more (the metric-drop alarm's threshold)."
        )
        plot = _plot(f"slice-{field}", f"{metric} by {field}", chart, caption if worse is not None else None)
    else:
        plot = _note(
            f"No value of {field} has enough ground truth for a metric yet "
            f"(a value needs {SLICE_MIN_LABELED} predictions with ground truth)."
        )
    return (
        f'<div class="card inset slice" data-slice="{_e(field)}"><h3>By {_e(field)}</h3>'
        f"<div class='grid grid-2-3 align-start'>{plot}<div class='scroll'>{table}</div></div></div>"
    )


# -- data quality -----------------------------------------------------------------------------


def _data_quality(result: dict[str, Any]) -> str:
    dq = result.get("data_quality") or {}
    alarms = result.get("alarms") or {}
    limits = (result.get("thresholds") or {}).get("alarms") or {}
    refusals = dq.get("refusals") or {}
    tiles = [
        _tile(
            "No stored features",
            _pct(dq.get("default_features_share")),
            f"baseline {_pct(dq.get('reference_default_features_share'))}",
            _alarm_tone(alarms, "default_features_share"),
        ),
        _tile(
            "Non-finite scores",
            _int(dq.get("nonfinite_scores")),
            "NaN or infinite",
            _alarm_tone(alarms, "nonfinite_scores"),
        ),
        _tile(
            "Refused",
            _pct(refusals.get("share")),
            f"{_int(refusals.get('online_requests'))} requests · "
            f"{_int(refusals.get('batch_rows'))} batch rows",
            _alarm_tone(alarms, "refused_share"),
        ),
    ]
    body = f'<div class="tiles">{"".join(tiles)}</div>'
    if not dq.get("judged") and dq.get("rows"):
        body += _note("Shown, not judged: too few predictions for the data-quality alarms.", "warn")
    rows = []
    for name, f in (dq.get("features") or {}).items():
        f = f or {}
        rows.append(
            [
                _e(name),
                _vs(f.get("missing_share"), f.get("reference_missing_share"), limits.get("missing_share")),
                _range_cell(f, limits.get("out_of_range_share")),
                _unknown_cell(f, limits.get("unknown_category_share")),
                _vs(f.get("default_share"), f.get("reference_default_share"), None)
                if "default_share" in f
                else "—",
            ]
        )
    body += "<h3>Per input</h3>" + _table(
        [
            "Input",
            "Missing (baseline)",
            "Out of the baseline's range",
            "Unknown categories",
            "Default value (baseline)",
        ],
        rows,
        numeric={1, 2, 3, 4},
        empty="No model inputs.",
    )
    body += _refusals(refusals)
    intro = "What production sends, against what the model was trained on."
    return _section("data-quality", "Data quality", intro, body)


def _vs(value: float | None, reference: float | None, limit: float | None) -> str:
    return _flag(f"{_pct(value)} <span class='sub-inline'>({_pct(reference)})</span>", value, limit)


def _range_cell(f: dict[str, Any], limit: float | None) -> str:
    if "out_of_range_share" not in f:
        return "—"
    value = f.get("out_of_range_share")
    low, high = (f.get("reference_range") or [None, None])[:2]
    text = (
        f"{_pct(value)} <span class='sub-inline'>({_num(low, 4, g=True)} to {_num(high, 4, g=True)})</span>"
    )
    return _flag(text, value, limit)


def _unknown_cell(f: dict[str, Any], limit: float | None) -> str:
    if "unknown_share" not in f:
        return "—"
    value = f.get("unknown_share")
    count = f.get("unknown_categories")
    text = (
        f"{_pct(value)} <span class='sub-inline'>({_int(count)} new value{'s' if count != 1 else ''})</span>"
    )
    return _flag(text, value, limit)


def _flag(text: str, value: float | None, limit: float | None) -> str:
    """The cell in the warning colour when its share reaches the alarm's threshold."""
    return (
        f"<span class='flag'>{text}</span>"
        if value is not None and limit is not None and value >= limit
        else text
    )


def _refusals(refusals: dict[str, Any]) -> str:
    by_status = refusals.get("by_status") or {}
    by_field = refusals.get("by_field") or []
    if not by_status and not by_field:
        return "<h3>Refused input</h3>" + _note("Nothing was refused for invalid input in this window.")
    chips = "".join(f"<span class='chip'>HTTP {_e(k)}: <b>{_int(v)}</b></span>" for k, v in by_status.items())
    rows = [
        [_e(r.get("field") or "(the request)"), _e(r.get("problem")), _int(r.get("count"))] for r in by_field
    ]
    return f"<h3>Refused input</h3><p class='chips'>{chips}</p>" + _table(
        ["Field", "Problem", "Refused"], rows, numeric={2}, empty="No field named."
    )


# -- service ----------------------------------------------------------------------------------


def _service(result: dict[str, Any]) -> str:
    service = result.get("service") or {}
    predictions = service.get("predictions") or {}
    latency = service.get("latency_ms") or {}
    refused = service.get("refused") or {}
    champion = service.get("champion") or {}
    tiles = [
        _tile(
            "Predictions",
            _int(predictions.get("serving_version")),
            f"serving version · {_int(predictions.get('all_versions'))} all versions",
        ),
        _tile(
            "Online",
            _int(predictions.get("online")),
            f"{_int(sum((service.get('online_requests') or {}).values()))} requests",
        ),
        _tile("Batch", _int(predictions.get("batch")), f"{_int(service.get('batch_jobs'))} jobs"),
        _tile(
            "Latency p50 / p99",
            f"{_num(latency.get('p50'), 1)} / {_unit(latency.get('p99'), 'ms')}",
            f"p90 {_unit(latency.get('p90'), 'ms')} · max {_unit(latency.get('max'), 'ms')} · "
            f"{_int(latency.get('rows'))} online",
        ),
        _tile(
            "Refused",
            _int((refused.get("online_requests") or 0) + (refused.get("batch_rows") or 0)),
            f"{_int(refused.get('online_requests'))} requests · {_int(refused.get('batch_rows'))} batch rows",
        ),
    ]
    body = f'<div class="tiles">{"".join(tiles)}</div>'
    body += _plot(
        "traffic",
        "Predictions per hour",
        charts.traffic(service.get("per_hour") or {}),
        "Every version's predictions in the window, by the hour they were made.",
        wide=True,
    )
    requests = service.get("online_requests") or {}
    versions = sorted(set(predictions.get("by_version") or {}) | set(requests))
    rows = [
        [
            ("<strong>v" if v == champion.get("version") else "v")
            + _e(v)
            + ("</strong>" if v == champion.get("version") else ""),
            _int((predictions.get("by_version") or {}).get(v)),
            _int(requests.get(v)),
        ]
        for v in versions
    ]
    facts = [
        ("Champion", f"version {_e(champion.get('version'))}"),
        ("Trained", _e(_since(champion.get("trained_at"), champion.get("age_days")))),
        ("Serving since", _e(_since(champion.get("serving_since"), champion.get("serving_days")))),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    body += (
        "<div class='grid grid-2 align-start'>"
        f"<div class='card inset'><h3>Champion</h3><dl class='facts'>{dl}</dl></div>"
        "<div class='card inset'><h3>By version</h3>"
        + _table(["Version", "Predictions", "Online requests"], rows, numeric={1, 2}, empty="No predictions.")
        + "</div></div>"
    )
    return _section("service", "Service", "Traffic, latency and refusals in the window.", body)


# -- footer -----------------------------------------------------------------------------------


def _footer(result: dict[str, Any]) -> str:
    thresholds = result.get("thresholds") or {}
    p_value, min_psi = _num(thresholds.get("drift_p_value"), 3), _num(thresholds.get("drift_min_psi"), 3)
    paragraphs = (
        "<b>PSI</b> (population stability index) sums (window share − baseline share) × ln(window share ÷"
        " baseline share) over the baseline's quantile bins (numbers) or categories. Below 0.1 is usually"
        " a small shift, above 0.25 a large one; it grows with the size of the shift, not with the number"
        " of rows.",
        "<b>Tests</b>: Kolmogorov–Smirnov for numbers (against the baseline's sample), chi-square for "
        "categories (against its counts). Every distribution of the run is tested, so each p-value is "
        f"judged at the run's p-value ({p_value}) divided by the number of tests (Bonferroni): the chance "
        "of any false alarm in a run stays at most that p-value. With many rows even a negligible shift "
        f"is significant, so a drift also needs PSI ≥ {min_psi}.",
        "<b>Estimated quality</b> (CBPE, confidence-based performance estimation) reads each score "
        "through the baseline's calibration map and computes the metric the scores imply, without labels."
        " It is right while the model stays calibrated: when inputs move but the relation between inputs "
        "and outcome does not. A change in that relation (concept drift) is invisible to it; the live "
        "metric shows it once ground truth arrives, and the reliability diagram shows whether the scores "
        "still mean what they say.",
    )
    text = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<footer id="how-to-read" class="wrap"><h2>How to read this report</h2>{text}'
        f"<p class='muted small'>Run {_e(result.get('run_id'))} · result format {_e(result.get('format'))} · "
        f"this report: {_e(result.get('report'))}</p></footer>"
    )


# -- building blocks --------------------------------------------------------------------------


def _section(key: str, title: str, intro: str | None, body: str) -> str:
    """A section of the page; `intro` and `body` are HTML, escaped by their makers."""
    lede = f"<p class='lede'>{intro}</p>" if intro else ""
    return f'<section id="{key}" class="card"><h2>{_e(title)}</h2>{lede}{body}</section>'


def _plot(key: str, title: str, svg: str, caption: str | None, *, wide: bool = False) -> str:
    note = f"<p class='caption'>{_e(caption)}</p>" if caption else ""
    return (
        f'<figure class="plot{" wide" if wide else ""}" data-plot="{_e(key)}">'
        f'<figcaption><span class="name">{_e(title)}</span></figcaption>{svg}{note}</figure>'
    )


def _tile(label: str, value: str, note: str = "", tone: str = "") -> str:
    return (
        f'<div class="tile{f" tone-{tone}" if tone else ""}"><span class="label">{_e(label)}</span>'
        f'<span class="value">{value}</span><span class="hint">{note}</span></div>'
    )


def _table(
    headers: list[str], rows: list[list[str]], *, numeric: set[int] = frozenset(), empty: str = ""
) -> str:
    """Cells are HTML already (escaped by the caller); `numeric` columns align right."""
    if not rows:
        return _note(empty) if empty else ""
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _badge(text: str, tone: str) -> str:
    return f'<span class="badge tone-{tone}">{_e(text)}</span>'


def _note(text: str, tone: str = "none") -> str:
    return f'<p class="note tone-{tone}">{_e(text)}</p>'


def _alarm_tone(alarms: dict[str, Any], key: str) -> str:
    state = (alarms.get(key) or {}).get("state")
    return "bad" if state == "ALARM" else ""


# -- formatting: every function returns text safe to put in HTML ------------------------------


def _e(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _num(value: Any, digits: int = 3, *, g: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—" if value is None else _e(value)
    return f"{value:,.{digits}g}" if g else f"{value:,.{digits}f}"


def _int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _pct(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if value == 0:
        return "0%"
    return f"{value * 100:.2f}%" if abs(value) < 0.001 else f"{value * 100:.1f}%"


def _p(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _unit(value: Any, unit: str, digits: int = 1) -> str:
    return f"{_num(value, digits)} {unit}" if isinstance(value, (int, float)) else "—"


def _signed(value: Any) -> str:
    return f"{value:+.3f}" if isinstance(value, (int, float)) else "—"


def _drop_text(drop: Any, against: str) -> str:
    if not isinstance(drop, (int, float)):
        return f"not compared with the {against}"
    return f"{abs(drop):.3f} {'worse' if drop > 0 else 'better'} than the {against}"


def _figure_value(metric: Any, value: Any) -> str:
    """An alarm's figure in its unit: shares as percentages, drops signed, counts whole."""
    if not isinstance(value, (int, float)):
        return "—"
    name = str(metric or "")
    if name.endswith("Share"):
        return _pct(value)
    if name.endswith("Drop"):
        return _signed(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _when(value: Any) -> str:
    """An ISO time as "2026-12-08 12:00 UTC" (the result writes UTC)."""
    if not value:
        return "—"
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    zone = "UTC" if at.utcoffset() is not None and not at.utcoffset() else (at.tzname() or "")
    return f"{at:%Y-%m-%d %H:%M} {zone}".strip()


def _since(when: Any, days: Any) -> str:
    """ "2026-12-08 00:43 UTC (11 hours ago)", or "not recorded"."""
    if not when:
        return "not recorded"
    return f"{_when(when)} ({_days(days)} ago)" if isinstance(days, (int, float)) else _when(when)


def _days(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if value < 1:
        return f"{value * 24:.0f} hours"
    return f"{value:.1f} days"
