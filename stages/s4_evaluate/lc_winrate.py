"""AlpacaEval 2 win rates adjusted for length: the GLMs of alpaca_eval.metrics.glm_winrate (0.6.6).

The official LC win rate (`length_controlled_v1`, the leaderboard's) is

    P(model beats reference | x) = sigmoid(theta + phi * tanh(delta_len_x / std(delta_len)) + psi * gamma_x)

with gamma_x the instruction's precomputed difficulty, fitted together with annotations of two length-gamed
versions of the reference (weight 0.1 each, which pulls the fit toward them). Both come from one file only the
Hugging Face hub has: `df_gamed.csv` of the dataset `tatsu-lab/alpaca_eval` (columns model, index, preference,
std_delta_len, instruction_difficulty, not_gamed_baseline; `index` is the instruction's row in the 805-row eval
set). LC = 100 * mean_x sigmoid(theta + psi * gamma_x).

Without that file we fit alpaca_eval's `length_controlled_minimal` GLM, sigmoid(theta + phi * tanh(...)), and report
100 * sigmoid(theta) as the "minimal-GLM win rate". It is NOT the LC win rate: with no instruction difficulty and no
pull toward the gamed baselines it reads 2-3x above the leaderboard's LC for weaker models (on alpaca_eval's
published annotations, 37.8 vs 19.3 for gpt-3.5-turbo-1106).

Both fit soft labels y = preference - 1 with L1-regularized logistic regression whose strength is chosen by 5-fold
grouped cross-validation on log loss; delta_len = len(reference output) - len(model output) in characters.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

GLM_NAME = "length_controlled_minimal"
OFFICIAL_GLM = "length_controlled_v1"
GAMED_FILE, GAMED_REPO = "df_gamed.csv", "tatsu-lab/alpaca_eval"  # a hub dataset
EVAL_SET_SIZE = 805
GAMED_WEIGHT = 0.2 / 2  # regularize_to_baseline_lambda, shared by the two gamed baselines
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


def official_length_controlled_win_rate(reference_outputs: Sequence[str], model_outputs: Sequence[str],
                                        preferences: Sequence[float | None], indices: Sequence[int],
                                        gamed_csv: str) -> dict[str, Any]:
    """The leaderboard's LC win rate (`length_controlled_v1`), or None with the reason.

    Args:
        reference_outputs, model_outputs, preferences: as for `length_controlled_win_rate`, shape [n].
        indices: each annotation's row in the 805-row AlpacaEval eval set, shape [n].
        gamed_csv: path of alpaca_eval's `df_gamed.csv`.
    """
    import numpy as np
    import pandas as pd

    gamed = pd.read_csv(gamed_csv).drop(columns=["model"])
    # One difficulty per instruction, looked up by row label as alpaca_eval does (the file lists index 0..804 first).
    difficulty = gamed.drop_duplicates("index")["instruction_difficulty"]
    delta = pd.Series([len(a) - len(b) for a, b in zip(reference_outputs, model_outputs)], dtype=float)
    prefs = pd.Series([np.nan if p is None else float(p) for p in preferences]).replace({0.0: 1.5}) - 1
    base = {"glm": OFFICIAL_GLM, "length_controlled_winrate": None, "lc_standard_error": None, "weights": None}
    if prefs.notna().sum() < N_SPLITS:
        return {**base, "reason": f"needs at least {N_SPLITS} judged instructions, has {int(prefs.notna().sum())}"}
    ours = pd.DataFrame({"preference": prefs, "index": list(indices), "std_delta_len": delta / delta.std(),
                         "instruction_difficulty": [float(difficulty.loc[i]) for i in indices],
                         "not_gamed_baseline": True})
    train = pd.concat([gamed, ours], axis=0)
    weight = np.where(train["not_gamed_baseline"].astype(bool), 1.0, GAMED_WEIGHT)
    features = np.stack([np.tanh(train["std_delta_len"]), train["instruction_difficulty"],
                         train["not_gamed_baseline"].astype(float)], axis=1)  # [m, 3], alpaca_eval's column order
    judged = train["preference"].notna().to_numpy()
    model = _fit_soft_label_logistic(features[judged], train["preference"].to_numpy()[judged], weight[judged])
    phi, psi, theta = (float(c) for c in model.coef_[0])
    predicted = 1 / (1 + np.exp(-(theta + psi * ours["instruction_difficulty"].to_numpy())))  # length term 0
    return {**base, "length_controlled_winrate": 100 * float(predicted.mean()),
            "lc_standard_error": 100 * float(pd.Series(predicted).sem()),
            "weights": {"np.tanh(std_delta_len)": phi, "instruction_difficulty": psi,
                        "not_gamed_baseline.astype(float)": theta}, "reason": None}


def _fit_soft_label_logistic(features, targets, sample_weight=None):
    """L1 logistic regression on soft labels: each row twice (label 1 weighted y, label 0 weighted 1 - y, both times
    the row's own weight), the regularization strength picked by GroupKFold cross-validation (both copies of a row in
    one fold) on the weighted log loss of the soft labels.

    Args:
        features: shape [m, f]. targets: y in [0, 1], shape [m]. sample_weight: shape [m], default all 1.
    """
    import numpy as np
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    m = len(targets)
    row_weight = np.ones(m) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    x = np.concatenate([features, features])  # [2m, f]
    labels = np.concatenate([np.ones(m), np.zeros(m)])  # [2m]
    weights = np.concatenate([targets, 1 - targets]) * np.concatenate([row_weight, row_weight])  # [2m]
    groups = np.concatenate([np.arange(m), np.arange(m)])
    soft = np.concatenate([targets, targets])  # [2m]: the soft label each copy stands for
    copy_weight = None if sample_weight is None else np.concatenate([row_weight, row_weight])

    def soft_log_loss(y_true, y_pred, soft_label, row_weight=None):
        p = np.clip(y_pred, 1e-15, 1 - 1e-15)
        loss = soft_label * np.log(p) + (1 - soft_label) * np.log(1 - p)
        return -np.mean(loss if row_weight is None else loss * row_weight)

    # penalty="l1" is spelled the way every scikit-learn release understands (1.8 deprecates it for l1_ratios).
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # liblinear on degenerate data, e.g. all-equal labels
        scorer = make_scorer(soft_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(soft_label=True, row_weight=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=N_SPLITS), scoring=scorer, penalty="l1",
                                     solver="liblinear", fit_intercept=False, random_state=RANDOM_STATE)
        model.set_fit_request(sample_weight=True)
        model.fit(x, labels, sample_weight=weights, groups=groups, soft_label=soft, row_weight=copy_weight)
    return model


def is_extreme_change(win_rate: float, lc_win_rate: float, abs_points: float = 10, rel_share: float = 4) -> bool:
    """alpaca_eval's warning rule: LC moved by more than max(10 points, a quarter of the room) from the raw rate."""
    too_small = lc_win_rate < min(win_rate - win_rate / rel_share, win_rate - abs_points)
    too_large = lc_win_rate > max(win_rate + (100 - win_rate) / rel_share, win_rate + abs_points)
    return too_small or too_large


MINIMAL_NOTE = ("alpaca_eval's minimal GLM (length term only): not the LC win rate, which adds instruction "
                "difficulty and a pull toward length-gamed baselines; it reads 2-3x above the leaderboard's LC for "
                "weaker models (37.8 vs 19.3 for gpt-3.5-turbo-1106)")


def gamed_file_path(setting: str, resolve) -> tuple[str | None, str | None]:
    """(path of df_gamed.csv, None) from a local path or "hub", or (None, why it cannot be had)."""
    if setting != "hub":
        path = resolve(setting)
        return (str(path), None) if path.is_file() else (None, f"{path} does not exist")
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(GAMED_REPO, GAMED_FILE, repo_type="dataset"), None
    except Exception as e:  # offline or blocked: the minimal GLM still stands, under its own name
        return None, f"{GAMED_FILE} could not be downloaded from {GAMED_REPO} ({type(e).__name__})"


def length_adjusted(annotations: Sequence[dict[str, Any]], gamed_csv: str | None, why_not: str | None) -> dict:
    """Both length-adjusted figures of saved annotations (with `index` for the official one), as result fields."""
    refs, outs = [a["output_1"] for a in annotations], [a["output_2"] for a in annotations]
    prefs = [a["preference"] for a in annotations]
    minimal = length_controlled_win_rate(refs, outs, prefs)
    indices = [a.get("index") for a in annotations]
    if why_not is None and (gamed_csv is None or None in indices):
        why_not = "the instructions are not rows of AlpacaEval's 805-instruction eval set"
    official = (official_length_controlled_win_rate(refs, outs, prefs, indices, gamed_csv) if why_not is None else
                {"length_controlled_winrate": None, "lc_standard_error": None, "weights": None, "reason": why_not})
    return {
        "length_controlled_winrate": official["length_controlled_winrate"], "lc_glm": OFFICIAL_GLM,
        "lc_standard_error": official["lc_standard_error"], "lc_weights": official["weights"],
        "lc_official": official["length_controlled_winrate"] is not None, "lc_not_computed": official["reason"],
        "minimal_glm_winrate": minimal["length_controlled_winrate"], "minimal_glm_weights": minimal["weights"],
        "minimal_glm_not_computed": minimal["reason"], "minimal_glm_note": MINIMAL_NOTE,
    }
