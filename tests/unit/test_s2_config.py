"""The distill section: variant rules, derived batch sizes, errors that name the key, the value and the fix."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from stages.s2_distill.config import DistillConfig, VariantConfig

PROMPTS = Path(__file__).resolve().parents[2] / "recipes" / "data" / "tiny_prompts.jsonl"
# The variants recommended for recipes/rm_distill_ppo.yaml: RM-Distiller, the two standard distillation baselines,
# and one ablation per ingredient (refinement, margin, regularization).
RECOMMENDED_VARIANTS = """
    rm_distiller:      {pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 0.1, kl_weight: 0.1}
    binary_bt:         {pairs: initial, margin: none,       objective: bt,         sft_weight: 0.0, kl_weight: 0.0}
    margin_bt:         {pairs: initial, margin: raw,        objective: margin_bt,  sft_weight: 0.0, kl_weight: 0.0}
    no_refinement:     {pairs: initial, margin: raw,        objective: margin_mse, sft_weight: 0.1, kl_weight: 0.1}
    no_margin:         {pairs: refined, margin: none,       objective: bt,         sft_weight: 0.1, kl_weight: 0.1}
    no_regularization: {pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 0.0, kl_weight: 0.0}
"""


def recipe_file(tmp_path: Path, distill: str, top_logprobs: int = 20) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"""
name: t
models: {{teacher: tiny-random-llama, policy: tiny-random-llama}}
data: {{prompts: {PROMPTS}}}
synthesize: {{teacher: teacher, generators: [policy, teacher], teacher_top_logprobs: {top_logprobs}}}
distill:
  base_model: policy
{distill}
""")
    return path


def test_recommended_variants_validate(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, "  variants:" + RECOMMENDED_VARIANTS))
    assert len(recipe.distill.variants) == 6
    assert recipe.distill.variants["no_margin"].objective == "bt"


@pytest.mark.parametrize("spec, message", [
    ({"pairs": "initial", "margin": "calibrated", "objective": "margin_mse"}, "does not exist for initial pairs"),
    ({"pairs": "refined", "margin": "raw", "objective": "margin_mse"}, "does not exist for refined pairs"),
    ({"pairs": "initial", "margin": "raw", "objective": "bt"}, "objective 'bt' uses no margin"),
    ({"pairs": "refined", "margin": "none", "objective": "margin_mse"}, "needs a margin; set margin: calibrated"),
])
def test_inconsistent_variants(spec, message):
    with pytest.raises(ValidationError, match=message):
        VariantConfig(**spec, sft_weight=0, kl_weight=0)


def test_loss_weights_have_no_default():
    with pytest.raises(ValidationError, match="sft_weight"):
        VariantConfig(pairs="initial", margin="none", objective="bt", kl_weight=0)


def test_gradient_accumulation_is_derived_and_must_divide():
    variants = {"v": VariantConfig(pairs="initial", margin="none", objective="bt", sft_weight=0, kl_weight=0)}
    cfg = DistillConfig(base_model="m", variants=variants, pairs_per_step=16, micro_pairs_per_device=2,
                        num_processes=2)
    assert cfg.gradient_accumulation_steps == 4
    assert cfg.split_rows == 0.1  # CPU default
    assert cfg.model_copy(update={"gpus_per_process": 1}).split_rows == 1.0  # GPU: one pass per micro-batch
    assert cfg.model_copy(update={"split_rows_min_saving": 0.3}).split_rows == 0.3
    with pytest.raises(ValidationError, match=r"pairs_per_step \(10\) must be a multiple of .*\(4 x 2\)"):
        DistillConfig(base_model="m", variants=variants, pairs_per_step=10, micro_pairs_per_device=4,
                      num_processes=2)


def test_recipe_errors_name_the_key(tmp_path):
    bad = """  variants:
    v: {pairs: refined, margin: calibrated, objective: margin_mse, sft_wieght: 0.1, kl_weight: 0}
    w: {pairs: initial, margin: none, objective: bradley_terry, sft_weight: 0, kl_weight: 0}
  zero_stage: 4"""
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe_file(tmp_path, bad))
    text = str(err.value)
    assert "distill.variants.v.sft_wieght: unknown key (did you mean 'sft_weight'?)" in text
    assert "distill.variants.v.sft_weight: required key is missing" in text
    assert "distill.variants.w.objective: 'bradley_terry' is not one of" in text
    assert "distill.zero_stage" in text


def test_kl_needs_teacher_top_logprobs(tmp_path):
    spec = ("  variants:\n"
            "    v: {pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 0, kl_weight: 0.5}")
    with pytest.raises(RecipeError, match=r"distill.variants.v.kl_weight: 0.5 needs the teacher's top-k logprobs"):
        load_recipe(recipe_file(tmp_path, spec, top_logprobs=0))
    assert load_recipe(recipe_file(tmp_path, spec, top_logprobs=5)).distill.variants["v"].kl_weight == 0.5


def test_local_ray_must_fit_the_ranks(tmp_path):
    spec = ("  variants:\n    v: {pairs: initial, margin: none, objective: bt, sft_weight: 0, kl_weight: 0}\n"
            "  num_processes: 2\n  cpus_per_process: 2")
    path = recipe_file(tmp_path, spec)
    with pytest.raises(RecipeError, match=r"distill.num_processes: 2 ranks need 4 CPUs, but cluster.num_cpus is 2"):
        load_recipe(path, ["cluster.num_cpus=2"])
    assert load_recipe(path, ["cluster.num_cpus=4"]).distill.num_processes == 2


def test_validate_checks_the_kl_vocabularies_it_has_on_disk(tmp_path, tiny_model):
    import json
    import shutil

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    extended, swapped = tmp_path / "extended", tmp_path / "swapped"
    for folder in (extended, swapped):
        shutil.copytree(tiny_model, folder)
    tok = AutoTokenizer.from_pretrained(extended)
    tok.add_tokens(["<think>", "</think>", "<tool_call>", "</tool_call>"])  # as Qwen3 extends Qwen2.5
    tok.save_pretrained(extended)
    data = json.loads(AutoTokenizer.from_pretrained(swapped).backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    vocab["the"], vocab["and"] = vocab["and"], vocab["the"]
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), eos_token="<|im_end|>",
                            pad_token="<|pad|>").save_pretrained(swapped)
    spec = ("  variants:\n"
            "    v: {pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 0, kl_weight: 0.5}")
    path = recipe_file(tmp_path, spec)
    assert load_recipe(path, [f"models.teacher={extended}"]).distill.variants["v"].kl_weight == 0.5
    with pytest.raises(RecipeError, match=r"distill.variants.v.kl_weight: .*does not extend the student's"):
        load_recipe(path, [f"models.teacher={swapped}"])
