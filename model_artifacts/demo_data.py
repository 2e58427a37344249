"""Synthetic, seeded data for the purchase-propensity demo model: users, requests and labels.

The world it simulates: a shop shows a user an item; the label says whether they bought it.
Stored per-user features (the feature store) and per-request fields both carry signal, the
label is a noisy logistic of them with a few non-linear interactions, and a `drift` knob
(0 = the world the model was trained on, 1 = strongly shifted) moves both the input
distributions (dearer items, more mobile traffic, a different country mix, shorter
sessions) and the relationship itself (discounts matter less, mobile converts better), so a
model trained at drift 0 loses quality at drift 1 and retraining on drifted data wins it back.

Everything is a pure function of (seed, drift): the same arguments give the same output.

    python -m model_artifacts.demo_data --out .inferline/demo --rows 20000 --seed 0 --drift 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inferline.spec import load_spec

MODEL = "purchase-propensity"
TARGET = "purchased"
STORED_FEATURES = ["purchases_30d", "avg_order_value", "days_since_last_visit", "tenure_days"]
REQUEST_FIELDS = [
    "user_id",
    "price",
    "category",
    "device",
    "country",
    "session_pages",
    "hour_of_day",
    "discount_pct",
    "email",
]
UNKNOWN_USER_SHARE = 0.05
EMAIL_MISSING_SHARE = 0.2

# category -> (median price, lognormal sigma)
CATEGORY_PRICE = {
    "books": (15.0, 0.45),
    "electronics": (220.0, 0.8),
    "fashion": (45.0, 0.6),
    "home": (70.0, 0.7),
    "sports": (55.0, 0.6),
    "toys": (28.0, 0.55),
    "grocery": (12.0, 0.5),
    "beauty": (25.0, 0.55),
}
# Input mixes at drift 0 and drift 1; in between they are blended linearly.
CATEGORY_MIX = (
    {
        "books": 0.14,
        "electronics": 0.14,
        "fashion": 0.18,
        "home": 0.12,
        "sports": 0.10,
        "toys": 0.08,
        "grocery": 0.14,
        "beauty": 0.10,
    },
    {
        "books": 0.08,
        "electronics": 0.22,
        "fashion": 0.22,
        "home": 0.12,
        "sports": 0.10,
        "toys": 0.08,
        "grocery": 0.08,
        "beauty": 0.10,
    },
)
DEVICE_MIX = (
    {"desktop": 0.45, "mobile": 0.45, "tablet": 0.10},
    {"desktop": 0.20, "mobile": 0.72, "tablet": 0.08},
)
COUNTRY_MIX = (
    {
        "US": 0.28,
        "GB": 0.10,
        "DE": 0.10,
        "FR": 0.08,
        "IN": 0.10,
        "BR": 0.06,
        "JP": 0.06,
        "CA": 0.06,
        "ES": 0.05,
        "IT": 0.05,
        "MX": 0.03,
        "AU": 0.03,
    },
    {
        "US": 0.16,
        "GB": 0.07,
        "DE": 0.07,
        "FR": 0.06,
        "IN": 0.22,
        "BR": 0.13,
        "JP": 0.04,
        "CA": 0.04,
        "ES": 0.04,
        "IT": 0.04,
        "MX": 0.10,
        "AU": 0.03,
    },
)
# Visits by hour: quiet at night, busy in the evening; drift moves traffic to midday.
HOUR_SHAPE = (
    np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 6, 6, 5, 5, 6, 7, 8, 9, 9, 8, 6, 4], float),
    np.array([2, 1, 1, 1, 1, 1, 2, 4, 5, 6, 7, 9, 10, 9, 7, 6, 6, 6, 6, 6, 6, 5, 4, 3], float),
)
DISCOUNT_STEPS = np.array([5, 10, 15, 20, 25, 30, 40, 50, 60, 70], float)
DISCOUNT_STEP_WEIGHTS = np.array([10, 14, 12, 12, 8, 8, 5, 3, 2, 1], float)

EVENT_START = np.datetime64("2025-01-01T00:00:00", "s")
EVENT_SPAN_DAYS = 90
DRIFT_DAYS = 180  # drift 1 is traffic from half a year later

# Independent random streams per purpose, so changing how one thing is drawn leaves the
# others as they were.
_USERS, _REQUESTS, _LABELS, _TRAINING = 1, 2, 3, 4


def generate_users(n_users: int, seed: int, drift: float = 0.0) -> list[dict[str, Any]]:
    """`n_users` users with ids "u00000".. and their stored features, as the feature store holds them."""
    return _users_frame(n_users, seed, drift).to_dict("records")


def generate_requests(
    n_rows: int,
    seed: int,
    drift: float = 0.0,
    users: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`n_rows` prediction request instances, exactly as a client sends them (no label).

    User ids come from `users` (default: generate_users for this seed and drift) except for
    about 5% of rows, which name users the feature store does not know. `email` (PII) is
    present on about 80% of rows and absent otherwise, as an optional field may be.
    """
    users_df = _users_table(n_rows, seed, drift, users)
    columns = _request_columns(n_rows, _rng(seed, _REQUESTS), drift, users_df["user_id"])
    email_present = columns.pop("email_present")
    names = [f for f in REQUEST_FIELDS if f in columns]
    rows = [
        dict(zip(names, values, strict=True))
        for values in zip(*(columns[name].tolist() for name in names), strict=True)
    ]
    for row, present in zip(rows, email_present.tolist(), strict=True):
        if not present:
            del row["email"]
    return rows


def generate_training_frame(
    n_rows: int,
    seed: int,
    drift: float = 0.0,
    users: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Labelled training rows: request fields (no email: PII is never trained on), the
    stored features the feature store would attach (its defaults for unknown users), the
    label `purchased` (0/1) and an `event_time` (UTC ISO) for time-based holdouts.
    """
    users_df = _users_table(n_rows, seed, drift, users)
    columns = _request_columns(n_rows, _rng(seed, _TRAINING), drift, users_df["user_id"])
    del columns["email"], columns["email_present"]
    frame = pd.DataFrame({"user_id": columns.pop("user_id"), **columns})
    frame = frame.merge(users_df[["user_id", *STORED_FEATURES]], on="user_id", how="left")
    known = frame["purchases_30d"].notna()
    # What the feature store answers for a user it does not know: the spec's defaults.
    for name, feature in load_spec(MODEL).stored_features.items():
        frame[name] = frame[name].where(known, feature.default).astype(type(feature.default))
    frame.insert(1, "event_time", _event_times(frame["hour_of_day"].to_numpy(), seed, drift))
    frame[TARGET] = draw_labels(frame, seed, drift)
    return frame


def purchase_probability(frame: pd.DataFrame, drift: float = 0.0) -> np.ndarray:
    """The true purchase probability of each row before the unobserved per-visit noise.

    A logistic of a score built from discount, price against the user's usual order value,
    session depth, recency, purchase history, tenure, device, hour and category, with a few
    interactions. `drift` changes the weights (concept drift), not just the inputs.
    """
    return 1.0 / (1.0 + np.exp(-_score(frame, drift)))


def draw_labels(frame: pd.DataFrame | list[dict[str, Any]], seed: int, drift: float = 0.0) -> np.ndarray:
    """Draw 0/1 `purchased` labels for full feature records (request fields + stored features)."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame.from_records(frame)
    rng = _rng(seed, _LABELS)
    noise = rng.normal(0.0, 0.5, len(frame))  # what the features cannot explain
    p = 1.0 / (1.0 + np.exp(-(_score(frame, drift) + noise)))
    return (rng.random(len(frame)) < p).astype("int64")


def write_demo_files(
    out_dir: Path | str,
    rows: int = 20_000,
    users: int = 2_000,
    seed: int = 0,
    drift: float = 0.0,
    requests: int = 200,
) -> dict[str, Path]:
    """Write `train.csv` (training frame), `users.csv` (the feature store's load file) and
    `requests.jsonl` (sample client requests, one instance per line) under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    user_rows = generate_users(users, seed, drift)
    paths = {"train": out / "train.csv", "users": out / "users.csv", "requests": out / "requests.jsonl"}
    generate_training_frame(rows, seed, drift, users=user_rows).to_csv(paths["train"], index=False)
    pd.DataFrame.from_records(user_rows).to_csv(paths["users"], index=False)
    # New traffic, not the training rows: a different seed for the same users.
    with paths["requests"].open("w", encoding="utf-8") as f:
        for row in generate_requests(requests, seed + 1, drift, users=user_rows):
            f.write(json.dumps(row) + "\n")
    return paths


# -- internals ---------------------------------------------------------------------------


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _check_drift(drift: float) -> float:
    drift = float(drift)
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    return drift


def _mix(pair: tuple[dict[str, float], dict[str, float]], drift: float) -> tuple[list, np.ndarray]:
    names = list(pair[0])
    weights = np.array([(1 - drift) * pair[0][n] + drift * pair[1][n] for n in names])
    return names, weights / weights.sum()


def _users_table(n_rows: int, seed: int, drift: float, users: list[dict] | None) -> pd.DataFrame:
    """The given users, or about one user per 10 rows generated for this seed and drift."""
    if users is not None:
        return pd.DataFrame.from_records(users)
    return _users_frame(max(50, n_rows // 10), seed, drift)


def _users_frame(n_users: int, seed: int, drift: float) -> pd.DataFrame:
    drift = _check_drift(drift)
    if n_users < 1:
        raise ValueError(f"n_users must be at least 1, got {n_users}")
    rng = _rng(seed, _USERS)
    engagement = rng.normal(size=n_users)  # latent: shapes every stored feature
    tenure = rng.gamma(1.3, 400 * (1 - 0.4 * drift), n_users)  # drift: a wave of new users
    purchases = rng.poisson(np.exp(-0.3 + 0.7 * engagement) * (1 - 0.3 * drift))
    aov = rng.lognormal(np.log(55) + 0.25 * engagement, 0.55)
    never_bought = (purchases == 0) & (rng.random(n_users) < np.where(tenure < 60, 0.7, 0.3))
    recency = rng.exponential(12 * np.exp(-0.5 * engagement) * (1 + 0.8 * drift))
    return pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n_users)],
            "purchases_30d": purchases.astype("int64"),
            "avg_order_value": np.where(never_bought, 0.0, np.round(aov, 2)),
            "days_since_last_visit": np.clip(recency, 0, 365).astype("int64"),
            "tenure_days": np.clip(tenure, 0, 3650).astype("int64"),
        }
    )


def _request_columns(
    n_rows: int, rng: np.random.Generator, drift: float, known_ids: pd.Series
) -> dict[str, np.ndarray]:
    drift = _check_drift(drift)
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    known = known_ids.astype(str).to_numpy()
    user_id = known[rng.integers(0, len(known), n_rows)].astype(object)
    unknown = rng.random(n_rows) < UNKNOWN_USER_SHARE
    user_id[unknown] = _unknown_ids(rng, int(unknown.sum()), set(known))

    categories, weights = _mix(CATEGORY_MIX, drift)
    category = np.array(categories, dtype=object)[rng.choice(len(categories), n_rows, p=weights)]
    median = np.array([CATEGORY_PRICE[c][0] for c in category])
    sigma = np.array([CATEGORY_PRICE[c][1] for c in category])
    price = np.round(rng.lognormal(np.log(median), sigma) * (1 + 0.3 * drift), 2)

    devices, weights = _mix(DEVICE_MIX, drift)
    device = np.array(devices, dtype=object)[rng.choice(len(devices), n_rows, p=weights)]
    countries, weights = _mix(COUNTRY_MIX, drift)
    country = np.array(countries, dtype=object)[rng.choice(len(countries), n_rows, p=weights)]

    mean_extra_pages = 4.5 - 2.5 * drift  # drift: shorter sessions
    session_pages = 1 + rng.negative_binomial(1.5, 1.5 / (1.5 + mean_extra_pages), n_rows)
    hours = (1 - drift) * HOUR_SHAPE[0] + drift * HOUR_SHAPE[1]
    hour_of_day = rng.choice(24, n_rows, p=hours / hours.sum())
    discounted = rng.random(n_rows) < 0.4 + 0.15 * drift  # drift: more promotions
    steps = rng.choice(DISCOUNT_STEPS, n_rows, p=DISCOUNT_STEP_WEIGHTS / DISCOUNT_STEP_WEIGHTS.sum())
    discount_pct = np.where(discounted, steps, 0.0)

    email = np.array(
        [f"user{int(u[1:])}@example.com" if u[1:].isdigit() else f"{u}@example.com" for u in user_id],
        dtype=object,
    )
    return {
        "user_id": user_id,
        "price": price,
        "category": category,
        "device": device,
        "country": country,
        "session_pages": session_pages.astype("int64"),
        "hour_of_day": hour_of_day.astype("int64"),
        "discount_pct": discount_pct,
        "email": email,
        "email_present": rng.random(n_rows) >= EMAIL_MISSING_SHARE,
    }


def _unknown_ids(rng: np.random.Generator, count: int, known: set[str]) -> list[str]:
    """Ids shaped like real ones ("u01234") that are not in `known`."""
    ids: list[str] = []
    floor = len(known)
    while len(ids) < count:
        for number in rng.integers(floor, floor + 10 * count + 1000, count - len(ids)):
            candidate = f"u{number:05d}"
            if candidate not in known:
                ids.append(candidate)
    return ids


def _event_times(hour_of_day: np.ndarray, seed: int, drift: float) -> np.ndarray:
    """UTC ISO timestamps inside a 90-day window (later with drift) on each row's hour."""
    rng = _rng(seed, _TRAINING + 100)
    n = len(hour_of_day)
    start = EVENT_START + np.timedelta64(int(round(_check_drift(drift) * DRIFT_DAYS)), "D")
    seconds = rng.integers(0, EVENT_SPAN_DAYS, n) * 86_400 + hour_of_day * 3_600 + rng.integers(0, 3_600, n)
    stamps = start + seconds.astype("timedelta64[s]")
    return np.char.add(np.datetime_as_string(stamps, unit="s"), "Z").astype(object)


def _score(frame: pd.DataFrame, drift: float) -> np.ndarray:
    d = _check_drift(drift)
    col = {name: frame[name].to_numpy() for name in frame.columns}
    price = col["price"].astype(float)
    discount = col["discount_pct"].astype(float)
    pages = col["session_pages"].astype(float)
    hour = col["hour_of_day"].astype(int)
    aov = col["avg_order_value"].astype(float)
    purchases = col["purchases_30d"].astype(float)
    recency = col["days_since_last_visit"].astype(float)
    tenure = col["tenure_days"].astype(float)
    category, device, country = col["category"], col["device"], col["country"]

    typical = np.array([CATEGORY_PRICE.get(c, (50.0, 0))[0] for c in category])
    reference = np.where(aov > 0, aov, typical)
    relative_price = np.log((price + 1) / (reference + 1))  # > 0: dearer than usual
    mobile = device == "mobile"

    score = (
        -2.0
        + (1.7 - 1.3 * d) * (1 - np.exp(-discount / 18))  # discounts work, with saturation
        - (0.55 + 0.55 * d) * relative_price
        - 0.3 * np.clip(relative_price, 0, None) ** 2  # far above the usual basket hurts more
        + (0.5 - 0.3 * d) * np.log1p(pages)
        - 0.35 * np.log1p(np.minimum(recency, 90))
        + 0.4 * np.log1p(purchases)
        + 0.25 * (tenure > 180)
        + np.where(mobile, -0.5 + 1.1 * d, 0.0)  # mobile checkout got better
        - 0.15 * (device == "tablet")
        + (0.35 - 0.3 * d) * ((hour >= 18) & (hour <= 22))
        - 0.3 * (hour <= 5)
        + 0.4 * d * ((hour >= 11) & (hour <= 14))  # the midday shoppers of the drifted world
        + 0.35 * (mobile & (pages >= 8))  # a long mobile session means intent
        + 0.3 * ((discount > 0) & np.isin(category, ["fashion", "beauty"]))
        - 0.45 * ((category == "electronics") & (relative_price > 0.5))
        + 0.25 * (category == "grocery")
        + 0.1 * (category == "books")
        - 0.2 * (category == "electronics")
        + 0.1 * (country == "US")
        + (-0.25 + 0.5 * d) * (country == "IN")
        - 0.1 * (country == "BR")
    )
    return score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the three files")
    parser.add_argument("--rows", type=int, default=20_000, help="training rows")
    parser.add_argument("--users", type=int, default=2_000, help="users in the feature store")
    parser.add_argument("--requests", type=int, default=200, help="sample client requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", type=float, default=0.0, help="0 = baseline, 1 = shifted")
    args = parser.parse_args(argv)
    paths = write_demo_files(
        args.out, rows=args.rows, users=args.users, seed=args.seed, drift=args.drift, requests=args.requests
    )
    for kind, path in paths.items():
        print(f"{kind:>8}: {path}")


if __name__ == "__main__":
    main()
