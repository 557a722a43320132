"""Churn labels, a baseline model (scikit-learn, time-based split), scores and retention offers."""

from __future__ import annotations

import hashlib
import json
import pickle
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from pipelines.churn.features import (
    BRONZE_BSS,
    FEATURE_COLUMNS,
    FEATURES,
    SILVER_USAGE,
    ChurnSettings,
    register_input,
)
from pipelines.core.config import REPO_ROOT, Settings
from pipelines.core.duck import connect, model_sql, query
from pipelines.core.errors import ChurnError
from pipelines.core.lake import Lake
from pipelines.core.model_files import load_run

LABELS = "gold/churn/labels"
MODEL_RUNS = "gold/churn/model_runs"
SCORES = "gold/churn/scores"
OFFERS = "gold/churn/offers"
OFFER_RULES = REPO_ROOT / "reference" / "churn_offers.toml"
# Model inputs (FEATURE_COLUMNS, in that order); nulls are filled with 0 or the value named here (a cap or a neutral value).
FEATURE_FILL = {c: 0 for c in FEATURE_COLUMNS} | {
    "voice_min_trend": 1, "call_count_trend": 1, "sms_count_trend": 1, "data_mb_trend": 1,
    "days_since_last_payment": 90, "days_since_last_activity": 90,
}


@dataclass
class TrainResult:
    """One training run, as stored in gold/churn/model_runs."""

    model_version: int
    trained_at: datetime
    train_from: date
    train_to: date
    test_from: date
    test_to: date
    rows_train: int
    rows_test: int
    positives_train: int
    positives_test: int
    roc_auc: float
    precision_at_5pct: float
    tenure_roc_auc: float
    tenure_precision_at_5pct: float
    model_path: str
    model_sha256: str
    features_version: int
    coefficients: str


def matrix(table: pa.Table) -> np.ndarray:
    """The model's input matrix (rows x FEATURE_COLUMNS) with nulls filled, as float64."""
    cols = [pc.fill_null(table[name].cast(pa.float64()), float(fill)).to_numpy() for name, fill in FEATURE_FILL.items()]
    return np.column_stack(cols)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): tames heavy-tailed counts and volumes before scaling."""
    return np.sign(x) * np.log1p(np.abs(x))


def baseline_model() -> object:
    """The baseline: signed log1p, standardise, L2 logistic regression with balanced classes."""
    return make_pipeline(
        FunctionTransformer(signed_log1p), StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, C=0.1)
    )


def precision_at(y: np.ndarray, score: np.ndarray, share: float = 0.05) -> float:
    """Share of churners among the ``share`` highest scores (at least one row)."""
    k = max(1, int(round(len(y) * share)))
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].mean())


def labelled_features(lake: Lake) -> tuple[pa.Table, int]:
    """Features joined to their label (rows whose 30-day future is known), and the features version."""
    dt = lake.table(FEATURES)
    con = connect(lake, {})
    con.execute("set TimeZone = 'UTC'")
    for view, name in (("silver_usage", SILVER_USAGE), ("bronze_bss_events", BRONZE_BSS)):
        register_input(con, view, lake.dataset(name))
    con.register("features_daily", dt.to_pyarrow_dataset())
    labels = query(con, model_sql("churn/labels"))
    lake.write(LABELS, labels, mode="overwrite", metadata={"features_version": dt.version()})
    con.register("labels", labels)
    joined = query(con, "select f.*, l.churned_within_30d from features_daily f join labels l using (subscriber_id, as_of_date) order by as_of_date, subscriber_id")
    con.close()
    return joined, dt.version()


def split_dates(dates: list[date], test_days: int, gap_days: int) -> tuple[list[date], list[date]]:
    """Test = the last ``test_days`` labelled dates; train = dates at least ``gap_days`` before the first test date."""
    dates = sorted(set(dates))
    test = dates[-test_days:]
    train = [d for d in dates if d <= test[0] - timedelta(days=gap_days)] if test else []
    return train, test


def train(settings: Settings) -> TrainResult:
    """Train the baseline and the tenure-only model on a time-based split and record the run.

    Raises:
        ChurnError: no features, or a split without rows or without churners.
    """
    cfg = ChurnSettings.from_settings(settings)
    lake = Lake.from_settings(settings)
    if not lake.exists(FEATURES):
        raise ChurnError(f"{FEATURES} does not exist: run `telcolake features --from ... --to ...` first")
    data, features_version = labelled_features(lake)
    dates = data["as_of_date"].to_pylist()
    train_dates, test_dates = split_dates(dates, cfg.test_days, cfg.gap_days)
    if not train_dates or not test_dates:
        raise ChurnError(
            f"not enough labelled as-of dates ({len(set(dates))}) for {cfg.test_days} test days and a {cfg.gap_days}-day gap; "
            "backfill more features or lower churn.test_days / churn.gap_days"
        )
    date_col = data["as_of_date"]
    is_train = pc.less_equal(date_col, pa.scalar(train_dates[-1], pa.date32()))
    is_test = pc.greater_equal(date_col, pa.scalar(test_dates[0], pa.date32()))
    x, y = matrix(data), data["churned_within_30d"].to_numpy(zero_copy_only=False).astype(int)
    tr, te = is_train.to_numpy(zero_copy_only=False), is_test.to_numpy(zero_copy_only=False)
    if len(set(y[tr])) < 2 or len(set(y[te])) < 2:
        raise ChurnError(f"the split needs churners and non-churners on both sides: train {y[tr].sum()}/{tr.sum()}, test {y[te].sum()}/{te.sum()}")
    model = baseline_model()
    model.fit(x[tr], y[tr])
    score = model.predict_proba(x[te])[:, 1]
    tenure_idx = FEATURE_COLUMNS.index("tenure_days")
    tenure = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    tenure.fit(x[tr][:, [tenure_idx]], y[tr])
    tenure_score = tenure.predict_proba(x[te][:, [tenure_idx]])[:, 1]
    version = (lake.read(MODEL_RUNS, columns=["model_version"]).num_rows if lake.exists(MODEL_RUNS) else 0) + 1
    path = settings.state_dir / "churn" / f"model-v{version}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = pickle.dumps({"model": model, "features": FEATURE_COLUMNS, "version": version})
    path.write_bytes(blob)
    coefs = dict(zip(FEATURE_COLUMNS, model[-1].coef_[0].round(4).tolist(), strict=True))
    result = TrainResult(
        model_version=version, trained_at=datetime.now(UTC), train_from=train_dates[0], train_to=train_dates[-1],
        test_from=test_dates[0], test_to=test_dates[-1], rows_train=int(tr.sum()), rows_test=int(te.sum()),
        positives_train=int(y[tr].sum()), positives_test=int(y[te].sum()),
        roc_auc=float(roc_auc_score(y[te], score)), precision_at_5pct=precision_at(y[te], score),
        tenure_roc_auc=float(roc_auc_score(y[te], tenure_score)), tenure_precision_at_5pct=precision_at(y[te], tenure_score),
        model_path=str(path), model_sha256=hashlib.sha256(blob).hexdigest(), features_version=features_version,
        coefficients=json.dumps(coefs),
    )
    lake.write(MODEL_RUNS, pa.Table.from_pylist([asdict(result)]))
    return result


def load_model(settings: Settings, version: int | None = None) -> tuple[dict, dict]:
    """The pickled model of ``version`` (latest when None) and its model_runs row.

    Raises:
        ChurnError: no model trained, an unknown version, a missing file, or a pickle that does not match its checksum.
    """
    return load_run(Lake.from_settings(settings), MODEL_RUNS, version, error=ChurnError, what="churn model", train="telcolake churn train")


def offer_rules(path: Path | None = None) -> tuple[dict, list[dict]]:
    """The default offer and the ordered rules of reference/churn_offers.toml.

    Raises:
        ChurnError: the file is missing a [default] with offer_id and text, or a rule is malformed.
    """
    doc = tomllib.loads((path or OFFER_RULES).read_text())
    default, rules = doc.get("default", {}), doc.get("rules", [])
    if not {"offer_id", "text"} <= set(default):
        raise ChurnError("churn_offers.toml: [default] needs offer_id and text")
    for i, rule in enumerate(rules):
        if not {"reason", "offer_id", "text"} <= set(rule) or rule["reason"] not in FEATURE_FILL:
            raise ChurnError(f"churn_offers.toml: rules[{i}] needs reason (one of the model features), offer_id and text")
    return default, rules
