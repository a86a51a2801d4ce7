"""Length-controlled AlpacaEval win rate: the GLM of alpaca_eval.metrics.glm_winrate, offline variant.

The official LC win rate (`length_controlled_v1`) adds a per-instruction difficulty and regularizes toward
length-gamed baselines; both come from files only the Hugging Face hub has. Offline we fit alpaca_eval's
`length_controlled_minimal` GLM, which has neither:

    P(model beats reference | x) = sigmoid(theta + phi * tanh(delta_len_x / std(delta_len)))

with delta_len = len(reference output) - len(model output) in characters, on soft labels y = preference - 1, with
L1-regularized logistic regression whose strength is chosen by 5-fold grouped cross-validation on log loss. The LC
win rate is the prediction with the length term removed: 100 * sigmoid(theta). The report labels it non-official.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

GLM_NAME = "length_controlled_minimal"
N_SPLITS = 5
RANDOM_STATE = 123  # alpaca_eval's, so the liblinear fit is the same


def length_controlled_win_rate(reference_outputs: Sequence[str], model_outputs: Sequence[str],
                               preferences: Sequence[float | None]) -> dict[str, Any]:
    """The offline LC win rate, or None with the reason when it cannot be fitted.

    Args:
        reference_outputs: output_1 of every annotation (judged or not), shape [n].
        model_outputs: output_2 of every annotation, shape [n].
        preferences: preference in [1, 2] (None / NaN where the judge gave none), shape [n].

    Returns:
        {"length_controlled_winrate", "lc_standard_error", "weights", "glm", "reason"}.
    """
    import numpy as np

    delta = np.array([len(a) - len(b) for a, b in zip(reference_outputs, model_outputs)], dtype=float)  # [n]
    prefs = np.array([np.nan if p is None else (1.5 if p == 0 else float(p)) for p in preferences])  # [n]
    valid = ~np.isnan(prefs)
    base = {"glm": GLM_NAME, "length_controlled_winrate": None, "lc_standard_error": None, "weights": None}
    if valid.sum() < N_SPLITS:
        return {**base, "reason": f"needs at least {N_SPLITS} judged instructions, has {int(valid.sum())}"}
    spread = delta.std(ddof=1)  # over every annotation, as alpaca_eval computes it before dropping unjudged rows
    if not spread > 0:
        return {**base, "reason": "every output pair has the same length difference, so length cannot be fitted"}
    features = np.stack([np.tanh(delta / spread), np.ones_like(delta)], axis=1)[valid]  # [m, 2]
    model = _fit_soft_label_logistic(features, prefs[valid] - 1)
    phi, theta = (float(c) for c in model.coef_[0])
    lc = 1 / (1 + math.exp(-theta))  # the same for every instruction: there is no per-instruction term offline
    return {**base, "length_controlled_winrate": 100 * lc, "lc_standard_error": 0.0,
            "weights": {"np.tanh(std_delta_len)": phi, "not_gamed_baseline.astype(float)": theta}, "reason": None}


def _fit_soft_label_logistic(features, targets):
    """L1 logistic regression on soft labels: each row twice (label 1 weighted y, label 0 weighted 1 - y), the
    regularization strength picked by GroupKFold cross-validation (both copies of a row in one fold) on the log loss
    of the soft labels.

    Args:
        features: shape [m, 2]. targets: y in [0, 1], shape [m].
    """
    import numpy as np
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    m = len(targets)
    x = np.concatenate([features, features])  # [2m, 2]
    labels = np.concatenate([np.ones(m), np.zeros(m)])  # [2m]
    weights = np.concatenate([targets, 1 - targets])  # [2m]: also the probability of the row's label
    groups = np.concatenate([np.arange(m), np.arange(m)])
    soft = np.concatenate([targets, targets])  # [2m]: the soft label each copy stands for

    def soft_log_loss(y_true, y_pred, soft_label):
        p = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return -np.mean(soft_label * np.log(p) + (1 - soft_label) * np.log(1 - p))

    # penalty="l1" is spelled the way every scikit-learn release understands (1.8 deprecates it for l1_ratios).
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # liblinear on degenerate data, e.g. all-equal labels
        scorer = make_scorer(soft_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(soft_label=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=N_SPLITS), scoring=scorer, penalty="l1",
                                     solver="liblinear", fit_intercept=False, random_state=RANDOM_STATE)
        model.set_fit_request(sample_weight=True)
        model.fit(x, labels, sample_weight=weights, groups=groups, soft_label=soft)
    return model


def is_extreme_change(win_rate: float, lc_win_rate: float, abs_points: float = 10, rel_share: float = 4) -> bool:
    """alpaca_eval's warning rule: LC moved by more than max(10 points, a quarter of the room) from the raw rate."""
    too_small = lc_win_rate < min(win_rate - win_rate / rel_share, win_rate - abs_points)
    too_large = lc_win_rate > max(win_rate + (100 - win_rate) / rel_share, win_rate + abs_points)
    return too_small or too_large
