"""The statistics of model monitoring on the demo world: how often the drift alarm fires on
undrifted traffic (false alarms) and on drifted traffic (power), PSI, KS and chi-square
against computations written here independently of model_artifacts.monitoring.drift, and
CBPE's estimates against the metrics the drawn labels realize.

Every window is a pure function of its seed (model_artifacts.demo_data), so each rate below
is the same on every run; the messages report the rates observed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import special
from sklearn.metrics import roc_auc_score

from inferline.monitoring import evaluate
from inferline.spec import ModelSpec, load_spec
from model_artifacts.bundle import ModelBundle
from model_artifacts.demo_data import draw_labels, generate_requests, generate_training_frame, generate_users
from model_artifacts.monitoring import cbpe
from model_artifacts.monitoring.drift import categorical_drift, drift_section, numeric_drift, psi
from model_artifacts.monitoring.logs import Categorical
from model_artifacts.train import train

WORLD_SEED = 7  # the users and the training frame
USERS, TRAINING_ROWS = 2_000, 20_000
# A day of a modest model's traffic, and twice the spec's min_rows (500): a window the
# monitoring job judges on an ordinary day, not one chosen to make the tests pass.
WINDOW_ROWS = 1_000
ALARM_SEEDS = 200
SHIFTED = 0.3  # the demo's drift knob for the power test
MAX_FALSE_ALARM_RATE = 0.05  # the spec's drift_p_value: the family-wise rate Bonferroni promises
MIN_POWER = 0.95
CBPE_ROWS, CBPE_SEEDS, CBPE_TOLERANCE = 5_000, 30, 0.03
FLOOR = 1e-4  # a bin's share is floored here before PSI (as drift.PSI_FLOOR)


@dataclass(frozen=True)
class World:
    spec: ModelSpec
    users: list[dict[str, Any]]
    stored: pd.DataFrame  # the feature store: stored features by user_id
    training: pd.DataFrame
    bundle: ModelBundle

    @property
    def baseline(self) -> dict[str, Any]:
        return self.bundle.baseline


@pytest.fixture(scope="module")
def world() -> World:
    """One model trained on the demo world at drift 0; every window is scored by it."""
    spec = load_spec("purchase-propensity")
    users = generate_users(USERS, WORLD_SEED)
    stored = pd.DataFrame.from_records(users).set_index("user_id")[list(spec.stored_features)]
    training = generate_training_frame(TRAINING_ROWS, WORLD_SEED, users=users)
    return World(spec, users, stored, training, train(spec, training, version="1"))


# -- windows ---------------------------------------------------------------------------------


def _records(world: World, rows: int, seed: int, drift: float) -> pd.DataFrame:
    """Requests of the world's users with their stored features attached, as serving sees
    them: the feature store's values, or the spec's defaults for a user it does not know."""
    requests = pd.DataFrame.from_records(generate_requests(rows, seed, drift, users=world.users))
    stored = world.stored.reindex(requests["user_id"]).reset_index(drop=True)  # unknown: NaN
    for name, feature in world.spec.stored_features.items():
        requests[name] = stored[name].fillna(feature.default)
    return requests


def _scored_windows(
    world: World, rows: int, seeds: range, drift: float
) -> list[tuple[pd.DataFrame, np.ndarray]]:
    """A window per seed with the model's positive-class scores (one predict call for all)."""
    frames = [_records(world, rows, seed, drift) for seed in seeds]
    inputs = pd.concat(frames, ignore_index=True)[world.spec.model_inputs]
    scores = world.bundle.predict_proba(inputs.to_dict("records"))[:, 1]
    return list(zip(frames, np.split(scores, len(frames)), strict=True))


def _categorical(values: np.ndarray) -> Categorical:
    codes, levels = pd.factorize(pd.Series(values, dtype=object).astype(str))
    return Categorical(codes.astype("int32"), [str(v) for v in levels])


def _drift_alarm(world: World, frame: pd.DataFrame, scores: np.ndarray) -> bool:
    """Whether a monitoring run over this window would put a drift alarm in ALARM."""
    spec = world.spec
    negative, positive = spec.target.classes
    predicted = np.where(scores >= spec.output.threshold, spec.label_for(positive), spec.label_for(negative))
    section = drift_section(
        spec,
        world.baseline,
        numeric={name: frame[name].to_numpy("float64") for name in spec.numeric_inputs},
        categorical={name: _categorical(frame[name].to_numpy()) for name in spec.categorical_inputs},
        scores=scores,
        labels=_categorical(predicted),
        mask=np.ones(len(frame), bool),
        judged=True,
    )
    alarms = evaluate(spec, section["figures"])
    return any(alarms[key]["state"] == "ALARM" for key in ("drifted_features", "prediction_drift"))


def _alarm_rate(world: World, seeds: range, drift: float) -> float:
    windows = _scored_windows(world, WINDOW_ROWS, seeds, drift)
    return float(np.mean([_drift_alarm(world, frame, scores) for frame, scores in windows]))


# -- the drift alarm -------------------------------------------------------------------------


def test_drift_alarm_rarely_fires_on_undrifted_traffic(world):
    rate = _alarm_rate(world, range(1_000, 1_000 + ALARM_SEEDS), drift=0.0)
    assert rate <= MAX_FALSE_ALARM_RATE, (
        f"the drift alarm fired on {rate:.1%} of {ALARM_SEEDS} undrifted windows of {WINDOW_ROWS} "
        f"rows (at most {MAX_FALSE_ALARM_RATE:.0%} expected)"
    )


def test_drift_alarm_fires_on_drifted_traffic(world):
    rate = _alarm_rate(world, range(2_000, 2_000 + ALARM_SEEDS), drift=SHIFTED)
    assert rate >= MIN_POWER, (
        f"the drift alarm fired on only {rate:.1%} of {ALARM_SEEDS} windows of {WINDOW_ROWS} rows "
        f"at drift {SHIFTED} (at least {MIN_POWER:.0%} expected)"
    )


# -- PSI, KS and chi-square against independent computations ---------------------------------


def _shares_by_bin(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Each value's bin found by comparing with the edges one bin at a time: bin k holds
    [edges[k], edges[k+1]); values below the first inner edge fall in the first bin, those at
    or above the last inner edge in the last (values outside the edges land in the end bins)."""
    inner = edges[1:-1]
    lower = [-np.inf, *inner]
    upper = [*inner, np.inf]
    counts = np.array([np.sum((values >= lo) & (values < hi)) for lo, hi in zip(lower, upper, strict=True)])
    assert counts.sum() == len(values)
    return counts / len(values)


def _psi(reference: np.ndarray, window: np.ndarray) -> float:
    total = 0.0
    for r, w in zip(reference, window, strict=True):
        r, w = max(r, FLOOR), max(w, FLOOR)
        total += (w - r) * math.log(w / r)
    return total


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """max |ECDF_a - ECDF_b| over the pooled values, each ECDF counted by comparison."""
    pooled = np.unique(np.concatenate([a, b]))
    ecdf_a = (a[None, :] <= pooled[:, None]).sum(axis=1) / len(a)
    ecdf_b = (b[None, :] <= pooled[:, None]).sum(axis=1) / len(b)
    return float(np.max(np.abs(ecdf_a - ecdf_b)))


def _ks_exact_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """P(D >= d) for distinct values, by counting lattice paths: merging the sorted samples
    walks from (0, 0) to (n, m); D is the path's largest |i/n - j/m|. Every merge is equally
    likely under the null, so p is the share of paths that reach D (exact integers)."""
    n, m = len(a), len(b)
    pooled = np.sort(np.concatenate([a, b]))
    i = np.cumsum(np.isin(pooled, a))
    j = np.arange(1, n + m + 1) - i
    reach = int(np.max(np.abs(i * m - j * n)))  # d * n * m, an integer
    inside = [[0] * (m + 1) for _ in range(n + 1)]
    for x in range(n + 1):
        for y in range(m + 1):
            if abs(x * m - y * n) >= reach:
                continue
            if x == y == 0:
                inside[x][y] = 1
            else:
                inside[x][y] = (inside[x - 1][y] if x else 0) + (inside[x][y - 1] if y else 0)
    return 1 - inside[n][m] / math.comb(n + m, n)


def test_psi_by_hand():
    # reference [0.5, 0.5], window [0.25, 0.75]:
    #   (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    #   = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3 = 0.274653072...
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.2746530721670274, abs=1e-15)
    # An empty reference bin counts as 1e-4: (0.5 - 0.5) ln 1 + (0.4 - 0.5) ln(0.4 / 0.5)
    #   + (0.1 - 0.0001) ln(0.1 / 0.0001) = 0.1 ln 1.25 + 0.0999 ln 1000 = 0.712399...
    expected = 0.1 * math.log(1.25) + 0.0999 * math.log(1000)
    assert psi(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.4, 0.1])) == pytest.approx(expected, abs=1e-15)
    assert expected == pytest.approx(0.7123991, abs=1e-7)


@pytest.mark.parametrize("drift", [0.0, SHIFTED])
@pytest.mark.parametrize(
    "name", ["price", "session_pages", "hour_of_day", "discount_pct", "avg_order_value", "tenure_days"]
)
def test_numeric_drift_matches_independent_psi_and_ks(world, name, drift):
    reference = world.baseline["features"][name]
    edges = reference["bin_edges"]
    window = _records(world, WINDOW_ROWS, 4_000, drift)[name].to_numpy("float64")

    result = numeric_drift(reference, window)

    training_shares = _shares_by_bin(world.training[name].to_numpy("float64"), edges)
    window_shares = _shares_by_bin(window, edges)
    np.testing.assert_allclose(reference["bin_proportions"], training_shares, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result["bins"]["window"], window_shares, rtol=0, atol=1e-12)
    assert result["psi"] == pytest.approx(_psi(training_shares, window_shares), abs=1e-12)
    sample = np.asarray(reference["sample"])
    statistic = _ks_statistic(sample, window)
    assert result["statistic"] == pytest.approx(statistic, abs=1e-12)
    # The asymptotic Kolmogorov distribution on the effective size n m / (n + m): within a
    # few percent of the exact p-value scipy computes at these sizes (10% where p ~ 1e-10).
    effective = len(sample) * len(window) / (len(sample) + len(window))
    asymptotic = float(special.kolmogorov(math.sqrt(effective) * statistic))
    assert result["p_value"] == pytest.approx(asymptotic, rel=0.15, abs=1e-12)


def test_ks_p_value_exact_on_small_samples():
    def baseline_of(sample: np.ndarray) -> dict[str, Any]:
        return {"bin_edges": [float(sample.min()), float(sample.max())], "bin_proportions": [1.0],
                "sample": sorted(sample.tolist())}  # fmt: skip

    # Apart: D = 1, reached by 2 of the C(8, 4) = 70 merges (all of one sample first).
    separate = numeric_drift(baseline_of(np.array([1.0, 2, 3, 4])), np.array([5.0, 6, 7, 8]))
    assert separate["statistic"] == 1.0
    assert separate["p_value"] == pytest.approx(2 / 70, rel=1e-12)

    rng = np.random.default_rng(5)
    for shift, n, m in [(0.0, 40, 25), (0.6, 40, 25), (1.0, 30, 30), (0.3, 17, 53)]:
        sample, window = rng.normal(0, 1, n), rng.normal(shift, 1, m)
        result = numeric_drift(baseline_of(sample), window)
        assert result["statistic"] == pytest.approx(_ks_statistic(sample, window), abs=1e-12)
        assert result["p_value"] == pytest.approx(_ks_exact_p_value(sample, window), rel=1e-9, abs=1e-15)


def _chi_square(reference: dict[str, int], window: dict[str, int]) -> tuple[float, float]:
    """Chi-square of homogeneity on the 2 x K table (K: categories seen in either), by hand."""
    levels = sorted(set(reference) | set(window))
    table = np.array([[reference.get(v, 0) for v in levels], [window.get(v, 0) for v in levels]], float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    freedom = len(levels) - 1
    return statistic, float(special.gammaincc(freedom / 2, statistic / 2))  # the chi2 survival


def test_chi_square_by_hand():
    # [[50, 50], [30, 70]]: expected [[40, 60], [40, 60]];
    #   chi2 = 2 (10^2 / 40 + 10^2 / 60) = 25 / 3, 1 degree of freedom: p = erfc(sqrt(25 / 6)).
    result = categorical_drift({"counts": {"a": 50, "b": 50}}, {"a": 30, "b": 70})
    assert result["statistic"] == pytest.approx(25 / 3, rel=1e-12)
    assert result["p_value"] == pytest.approx(math.erfc(math.sqrt(25 / 6)), rel=1e-9)
    assert result["psi"] == pytest.approx(_psi(np.array([0.5, 0.5]), np.array([0.3, 0.7])), abs=1e-15)


@pytest.mark.parametrize("drift", [0.0, SHIFTED])
@pytest.mark.parametrize("name", ["category", "device", "country"])
def test_categorical_drift_matches_hand_written_chi_square(world, name, drift):
    reference = world.baseline["features"][name]
    values = _records(world, WINDOW_ROWS, 4_000, drift)[name].astype(str)
    window = values.value_counts().to_dict() | {"never-seen": 3}  # a category the baseline lacks

    result = categorical_drift(reference, window)

    statistic, p_value = _chi_square(reference["counts"], window)
    assert result["statistic"] == pytest.approx(statistic, rel=1e-12)
    assert result["p_value"] == pytest.approx(p_value, rel=1e-9, abs=1e-300)
    levels = sorted(set(reference["counts"]) | set(window))
    ref = np.array([reference["counts"].get(v, 0) for v in levels]) / sum(reference["counts"].values())
    win = np.array([window.get(v, 0) for v in levels]) / sum(window.values())
    assert result["psi"] == pytest.approx(_psi(ref, win), abs=1e-12)


# -- CBPE ------------------------------------------------------------------------------------


def test_cbpe_estimates_match_realized_metrics_on_undrifted_traffic(world):
    spec = world.spec
    seeds = range(3_000, 3_000 + CBPE_SEEDS)
    auc_errors, accuracy_errors = [], []
    for seed, (frame, scores) in zip(seeds, _scored_windows(world, CBPE_ROWS, seeds, 0.0), strict=True):
        labels = draw_labels(frame, seed, 0.0)
        estimated = cbpe.estimate(spec, scores, world.baseline["calibration"])
        auc_errors.append(abs(estimated["roc_auc"] - roc_auc_score(labels, scores)))
        accuracy = np.mean((scores >= spec.output.threshold) == (labels == spec.positive_class))
        accuracy_errors.append(abs(estimated["accuracy"] - accuracy))

    report = (
        f"over {CBPE_SEEDS} windows of {CBPE_ROWS} rows: ROC AUC error max {max(auc_errors):.4f} "
        f"mean {np.mean(auc_errors):.4f}; accuracy error max {max(accuracy_errors):.4f} "
        f"mean {np.mean(accuracy_errors):.4f}"
    )
    assert max(auc_errors) <= CBPE_TOLERANCE, report
    assert max(accuracy_errors) <= CBPE_TOLERANCE, report


@pytest.mark.parametrize("levels", [None, 20, 3], ids=["distinct", "20-ties", "3-ties"])
def test_expected_roc_auc_with_known_labels_is_the_roc_auc(levels):
    rng = np.random.default_rng(11)
    scores = rng.random(2_000)
    if levels is not None:  # many rows share each score
        scores = np.floor(scores * levels) / levels
    labels = (rng.random(len(scores)) < 0.2 + 0.6 * scores).astype(int)

    assert cbpe.expected_roc_auc(scores, labels.astype(float)) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-12
    )
