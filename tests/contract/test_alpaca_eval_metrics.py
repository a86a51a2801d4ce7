"""Our saved AlpacaEval annotations, scored by alpaca_eval's own metric functions, give our numbers.

alpaca_eval's LC functions always download `df_gamed.csv` from the Hugging Face hub, which is unreachable here, so
the download is pointed at a local stand-in file of that shape; every number still comes from alpaca_eval's
featurization and fit. The minimal GLM (`length_controlled_minimal`) uses nothing from that file but a per-row
`instruction_difficulty` lookup that its formula then leaves out; the official one (`length_controlled_v1`) uses
all of it, so it is compared on stand-in files with random difficulties and gamed annotations.
"""

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.s4_evaluate.alpacaeval import win_rate
from stages.s4_evaluate.lc_winrate import GLM_NAME, length_controlled_win_rate
from ray_cluster.session import shutdown
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.pipeline import run_jobs
from stages.s4_evaluate.stage import jobs

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-learn 1.8 deprecations inside alpaca_eval


def official(annotations: list[dict], tmp_path: Path) -> dict:
    import alpaca_eval.metrics.glm_winrate as glm
    from alpaca_eval.metrics import get_winrate

    stand_in = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "none", "index": range(len(annotations)), "instruction_difficulty": 0.0}).to_csv(stand_in)
    df = pd.DataFrame(annotations)
    df["preference"] = df["preference"].astype(float)  # JSON null -> NaN, as alpaca_eval reads it
    with mock.patch.object(glm, "hf_hub_download", return_value=str(stand_in)):
        lc = glm.get_length_controlled_winrate(df.copy(), glm_name=GLM_NAME, save_weights_dir=None)
    return {**get_winrate(df), "length_controlled_winrate": lc["length_controlled_winrate"]}


def assert_same(ours_rates: dict, ours_lc: float | None, theirs: dict) -> None:
    for key in ("win_rate", "standard_error", "discrete_win_rate"):
        assert ours_rates[key] == pytest.approx(float(theirs[key]), rel=1e-9, abs=1e-9), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert ours_rates[key] == int(theirs[key]), key
    assert ours_lc == pytest.approx(float(theirs["length_controlled_winrate"]), rel=1e-9, abs=1e-9)


def synthetic(seed: int, n: int = 40) -> list[dict]:
    rng = np.random.default_rng(seed)
    ref_len, out_len = rng.integers(5, 120, n), rng.integers(5, 400, n)
    prefs = np.clip(1 + out_len / (ref_len + out_len) + rng.normal(0, 0.25, n), 1, 2)  # length-biased judge
    rows = [{"instruction": f"instruction {i}", "output_1": "r" * int(a), "output_2": "m" * int(b),
             "generator_1": "reference", "generator_2": "policy", "preference": float(p)}
            for i, (a, b, p) in enumerate(zip(ref_len, out_len, prefs))]
    rows[3]["preference"] = None  # the judge gave no m/M logprob: dropped by both
    rows[5]["preference"] = 1.5  # a draw
    rows[7]["preference"] = 2.0
    return json.loads(json.dumps(rows))  # exactly what a saved annotations.json reads back as


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_annotations_match_alpaca_eval(seed, tmp_path):
    rows = synthetic(seed)
    prefs = [r["preference"] for r in rows]
    ours_lc = length_controlled_win_rate([r["output_1"] for r in rows], [r["output_2"] for r in rows], prefs)
    assert_same(win_rate(prefs), ours_lc["length_controlled_winrate"], official(rows, tmp_path))


def test_annotations_saved_by_the_stage_match_alpaca_eval(tmp_path):
    raw = {"name": "contract", "run_dir": str(tmp_path / "run"), "cluster": {"address": "local", "num_cpus": 2},
           "models": {"policy": {"source": "tiny-random-llama", "seed": 1}, "judge": "tiny-random-llama"},
           "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")},
           "evaluate": {"judge": "judge", "judge_engine": {"backend": "hf", "max_model_len": 2048},
                        "policy_engine": {"backend": "hf", "max_model_len": 2048}, "policies": {"pol": "policy"},
                        "alpaca_eval": {"instructions": {"source": "smoke"}, "max_new_tokens": 12,
                                        "top_logprobs": 2048, "both_orders": True}}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe = load_recipe(path)
    try:
        run_jobs(recipe, jobs(recipe), {"evaluate"})
    finally:
        shutdown()
    folder = recipe.run_path / "s4_evaluate" / "policy" / "pol"
    annotations = json.loads((folder / "alpaca_eval" / "annotations.json").read_text())
    results = json.loads((folder / "results.json").read_text())["alpaca_eval"]
    assert len(annotations) == 12 and results["n_total"] >= 5
    assert results["position_flip_rate"] is not None  # both orders were judged
    assert all(len(a["preferences_per_order"]) == 2 for a in annotations if a["preference"] is not None)
    assert_same(results, results["minimal_glm_winrate"], official(annotations, tmp_path))
    assert results["length_controlled_winrate"] is None and not results["lc_official"]  # no df_gamed.csv given
    assert "lc_gamed_file" in results["lc_not_computed"]


EXCERPT = Path("alpaca_eval") / "annotations_gpt-3.5-turbo-1106_excerpt.json"  # in the benchmark excerpts


def stand_in_gamed(path: Path, seed: int) -> None:
    """A file in the shape of alpaca_eval's df_gamed.csv (hub only): two length-gamed baselines x 805 instructions,
    each instruction with one difficulty. Values are random; the test compares fits, not the leaderboard."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1, 805)
    parts = [pd.DataFrame({"model": name, "index": range(805), "preference": rng.uniform(0, 1, 805),
                           "std_delta_len": rng.normal(0, 1, 805), "instruction_difficulty": difficulty,
                           "not_gamed_baseline": False}) for name in ("gamed_concise", "gamed_verbose")]
    pd.concat(parts).to_csv(path, index=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_official_lc_matches_alpaca_eval_length_controlled_v1_on_published_annotations(excerpts, seed, tmp_path):
    """alpaca_eval's published annotations of gpt-3.5-turbo-1106 (30 of 805, every 27th instruction)."""
    import alpaca_eval.metrics.glm_winrate as glm
    from alpaca_eval.metrics import get_winrate

    from stages.s4_evaluate.lc_winrate import OFFICIAL_GLM, official_length_controlled_win_rate

    rows = json.loads((excerpts / EXCERPT).read_text())
    indices = [27 * i for i in range(len(rows))]
    gamed = tmp_path / "df_gamed.csv"
    stand_in_gamed(gamed, seed)
    prefs = [r["preference"] for r in rows]
    ours = official_length_controlled_win_rate([r["output_1"] for r in rows], [r["output_2"] for r in rows], prefs,
                                               indices, str(gamed))
    df = pd.DataFrame(rows).assign(index=indices)
    with mock.patch.object(glm, "hf_hub_download", return_value=str(gamed)):
        theirs = glm.get_length_controlled_winrate(df, glm_name=OFFICIAL_GLM, save_weights_dir=None)
    assert ours["length_controlled_winrate"] == pytest.approx(theirs["length_controlled_winrate"], rel=1e-9)
    assert ours["lc_standard_error"] == pytest.approx(theirs["lc_standard_error"], rel=1e-9)
    assert win_rate(prefs)["win_rate"] == pytest.approx(get_winrate(pd.DataFrame(rows))["win_rate"], rel=1e-12)
