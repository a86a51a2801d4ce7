"""Sweeps: cells from seeds x grid, every cell checked up front, and the aggregate report from hand-written cells."""

import json
import math
from pathlib import Path

import pytest
import yaml

from rlhf_stack.core import plots
from rlhf_stack.core.artifacts import publish
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.app.report import write_report
from rlhf_stack.app.recipe import cell_name, sweep_cells
from rlhf_stack.app.sweep_config import SweepConfig
from rlhf_stack.core.intervals import t_interval

REPO = Path(__file__).resolve().parents[2]
FLIP = "synthesize.verifier.noise.flip_prob"


def recipe_file(tmp_path, sweep: dict, **sections) -> Path:
    raw = yaml.safe_load((REPO / "recipes/sandbox_tiny.yaml").read_text())
    raw["data"]["prompts"] = str(REPO / "recipes/data/sandbox_tiny.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    raw["sweep"] = sweep
    raw.update(sections)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cells_are_seeds_times_grid_points_each_a_recipe_of_its_own(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, {"seeds": [0, 1, 2], "grid": {FLIP: [0.0, 0.3]},
                                                "baseline": "binary_bt"}))
    cells = sweep_cells(recipe)
    assert [c.name for c in cells] == [f"flip_prob={f},seed={s}" for f in (0.0, 0.3) for s in (0, 1, 2)]
    last = cells[-1]
    assert last.seed == last.recipe.seed == 2 and last.values == {FLIP: 0.3}
    assert last.recipe.synthesize.verifier.noise.flip_prob == 0.3 and last.recipe.sweep is None
    assert last.run_dir == tmp_path / "run" / "cells" / "flip_prob=0.3,seed=2"
    assert last.recipe.synthesize.generation_cache == str(tmp_path / "run" / "generation_cache.jsonl")
    assert cells[0].recipe.synthesize.verifier.noise.score_sigma_points == 0.5  # the rest is the base recipe


def test_cell_names_keep_keys_apart_when_their_last_parts_collide():
    assert cell_name({"a.lr": 1, "b.lr": 2, "c.x": "y/z"}, 4) == "a.lr=1,b.lr=2,x=y_z,seed=4"


def test_every_cell_is_checked_before_anything_runs(tmp_path):
    bad = {"seeds": [0, 1], "grid": {"synthesize.verifier.noise.flip_prb": [0.1],
                                     "distill.lr": [1.0e-3, -1.0]}, "baseline": "binary_btt"}
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe_file(tmp_path, bad))
    text = str(e.value)
    assert "sweep.baseline: 'binary_btt' is not a distill variant (did you mean 'binary_bt'?)" in text
    assert "synthesize.verifier.noise.flip_prb (sweep cell lr=0.001,flip_prb=0.1,seed=0): unknown key " \
           "(did you mean 'flip_prob'?)" in text
    assert "distill.lr (sweep cell lr=-1.0,flip_prb=0.1,seed=0)" in text
    assert "seed=1" not in text  # one report per grid point: the other seeds fail the same way


def test_grid_points_that_would_share_a_cell_folder_are_refused(tmp_path):
    grid = {"synthesize.drop_position_flips": [True, "True"]}  # distinct values, one folder name
    with pytest.raises(RecipeError, match="two grid points share the cell folder 'drop_position_flips=True,seed=0'"):
        load_recipe(recipe_file(tmp_path, {"seeds": [0], "grid": grid}))


@pytest.mark.parametrize("sweep, message", [
    ({"seeds": []}, "at least 1 item"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"seeds": [0], "grid": {"seed": [1, 2]}}, "cannot be swept"),
    ({"seeds": [0], "grid": {"distill.lr": []}}, "needs distinct values"),
    ({"seeds": [0], "grid": {"distill.lr": [{"a": 1}]}}, "distill.lr"),
])
def test_the_sweep_section_is_strict(sweep, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig.model_validate(sweep)


def test_t_interval_by_hand():
    mean, low, high = t_interval([0.6, 0.7, 0.8])
    half = 4.302652729749462 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((0.7, 0.7 - half, 0.7 + half))
    assert t_interval([0.5]) == (0.5, None, None)


ACC = {  # (flip, seed) -> (rm_distiller, binary_bt) ground-truth pair accuracy
    (0.0, 0): (0.80, 0.70), (0.0, 1): (0.90, 0.60), (0.0, 2): (0.70, 0.65),
    (0.3, 0): (0.75, 0.50), (0.3, 1): (0.70, 0.55), (0.3, 2): (0.65, 0.45),
}


def run_folder(tmp_path: Path, path: Path) -> Path:
    """A run folder that `rlhf-stack report` reads as a run of the recipe at `path` (cells still to be finished)."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "recipe.resolved.yaml").write_text(path.read_text())
    (run / "run.json").write_text(json.dumps({"recipe": str(path), "base_dir": str(REPO / "recipes"),
                                              "overrides": []}))
    return run


def finish(folder: Path, rel: str, files: dict, summary=None) -> None:
    for name, content in files.items():
        (folder / rel / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel / name).write_text(json.dumps(content))
    publish(folder / rel, kind="evaluation", stage=rel.split("/")[0], rel_folder=rel, config_hash="h", inputs={},
            summary=summary or {}, wall_time_s=10.0)


def test_the_sweep_report_aggregates_the_cells_over_seeds(tmp_path):
    from PIL import Image

    path = recipe_file(tmp_path, {"seeds": [0, 1, 2], "grid": {FLIP: [0.0, 0.3]}, "baseline": "binary_bt"})
    recipe = load_recipe(path)
    run = run_folder(tmp_path, path)
    for cell in sweep_cells(recipe):
        flip = cell.values[FLIP]
        for variant, acc in zip(("rm_distiller", "binary_bt"), ACC[(flip, cell.seed)]):
            gt = {"candidates": {"accuracy": acc, "pairs": 40, "skipped_ties": 0}}
            finish(cell.run_dir, f"s4_evaluate/rm/{variant}", {"results.json": {"ground_truth": gt}})
            compliance = {"mean_compliance": acc / 2, "full_compliance_rate": 0.1, "answers": 45, "by_kind": {}}
            finish(cell.run_dir, f"s4_evaluate/policy/{variant}", {"results.json": {"compliance": compliance}})
    text = write_report(run).read_text()
    summary = json.loads((run / "report" / "summary.json").read_text())

    rm = summary["metrics"]["gt_candidates"][f"flip_prob=0.3"]["rm_distiller"]
    assert rm["values"] == {"0": 0.75, "1": 0.70, "2": 0.65}
    assert (rm["mean"], rm["low"], rm["high"]) == pytest.approx(t_interval([0.75, 0.70, 0.65]))
    diff = summary["differences"]["gt_candidates"]["flip_prob=0.0"]["rm_distiller"]
    assert diff["values"] == pytest.approx({"0": 0.10, "1": 0.30, "2": 0.05})
    assert (diff["mean"], diff["low"], diff["high"]) == pytest.approx(t_interval([0.10, 0.30, 0.05]))
    half = 4.302652729749462 * statistics_sd([0.10, 0.30, 0.05]) / math.sqrt(3)
    assert f"| 15.0 [{15 - 100 * half:.1f}, {15 + 100 * half:.1f}] | 3 | +10.0, +30.0, +5.0 |" in text
    assert "## Measured difference to `binary_bt`" in text and "synthesize.generation_seed = 0" in text
    assert "initial" not in summary["metrics"]["compliance"]["flip_prob=0.0"]  # no initial policy results here
    for png in ("gt_candidates.png", "compliance.png"):
        assert f"({png})" in text
        with Image.open(run / "report" / png) as img:
            assert img.size == plots.SIZE_PX
    assert "| `flip_prob=0.3,seed=2` | 4 | 40.0 |" in text  # four finished folders of 10 s each


def statistics_sd(values):
    import statistics

    return statistics.stdev(values)


def test_a_learning_curve_sweep_lists_each_rms_training_pairs_per_grid_point(tmp_path):
    grid = {"distill.train_prompt_fraction": [0.5, 1.0]}
    path = recipe_file(tmp_path, {"seeds": [0, 1], "grid": grid, "baseline": "binary_bt"})
    recipe = load_recipe(path)
    run = run_folder(tmp_path, path)
    for cell in sweep_cells(recipe):
        pairs = int(40 * cell.values["distill.train_prompt_fraction"]) + cell.seed  # 20/21 and 40/41
        for variant in ("rm_distiller", "binary_bt"):
            finish(cell.run_dir, f"s2_distill/{variant}", {}, summary={"train_pairs": pairs, "steps": pairs // 2})
    text = write_report(run).read_text()
    assert "## Training pairs per grid point" in text
    assert "| train_prompt_fraction=0.5 | 20.5 / 10.0 | 20.5 / 10.0 |" in text
    assert "| train_prompt_fraction=1.0 | 40.5 / 20.0 | 40.5 / 20.0 |" in text
    no_grid = recipe_file(tmp_path, {"seeds": [0, 1], "grid": {FLIP: [0.0]}})
    assert "Training pairs" not in write_report(run_folder(tmp_path, no_grid)).read_text()
