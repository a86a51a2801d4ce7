"""The precision rule from given CPU flags and GPU capabilities, and the validate refusal of a slow explicit one."""

from pathlib import Path

import pytest

from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core import precision
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.hardware import cpu_model_and_flags
from rlhf_stack.core.precision import ComputeUse, choose, native_on_cpu, resolve

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
AVX2_ONLY = {"avx", "avx2", "fma", "f16c"}  # e.g. AMD EPYC (Zen 2/3), older Xeons
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16", "avx512_fp16"}  # Xeon under KVM without AMX
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}  # Sapphire/Emerald Rapids


@pytest.mark.parametrize("flags, expected", [(AVX2_ONLY, "fp32"), (AVX512_BF16, "fp32"), (AMX, "bf16"),
                                             (set(), "fp32")])
def test_cpu_gets_bf16_only_with_amx(flags, expected):
    assert choose("cpu", flags) == expected


@pytest.mark.parametrize("capability, expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                                  ((8, 6), "bf16"), ((9, 0), "bf16")])
def test_gpu_gets_bf16_from_ampere_on_and_fp16_before(capability, expected):
    assert choose("cuda", AVX2_ONLY, capability) == expected


def test_explicit_settings_win_and_torch_spellings_are_the_same_setting():
    assert resolve("fp32", "cuda", cuda_capability=(9, 0)) == "fp32"
    assert resolve("bfloat16", "cpu", AVX2_ONLY) == "bf16"
    assert resolve("auto", "cpu", AMX) == "bf16"
    assert resolve("auto", "cpu", AVX2_ONLY) == "fp32"


def test_fp16_counts_as_native_on_a_cpu_only_with_avx512_fp16_or_amx_fp16():
    assert not native_on_cpu("fp16", AVX2_ONLY)
    assert native_on_cpu("fp16", AVX512_BF16)
    assert native_on_cpu("fp32", set())


def _use(requested: str, device: str = "cpu", here: bool = True) -> ComputeUse:
    return ComputeUse("distill", "reward model training", "distill.dtype", requested, device, 2, 1, here)


def test_only_explicit_slow_settings_on_this_machines_cpu_are_slow(monkeypatch):
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("AVX2 CPU", frozenset(AVX2_ONLY)))
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtype, seconds: 70.0 if dtype == "float32" else 1.4)
    problems = precision.slow_precision_problems(
        [_use("bf16"), _use("auto"), _use("fp32"), _use("bf16", device="cuda"), _use("bf16", here=False)])
    assert len(problems) == 1
    (p,) = problems
    assert p.key == "distill.dtype" and "'bf16'" in p.message and "50.0x slower" in p.message
    assert "auto" in p.fix and "compute.allow_slow_precision" in p.fix


def test_validate_refuses_explicit_bf16_on_a_cpu_without_it_unless_the_recipe_insists():
    _, flags = cpu_model_and_flags()
    if native_on_cpu("bf16", flags):
        pytest.skip("this CPU has AMX: bf16 is native here")
    with pytest.raises(RecipeError) as e:
        load_recipe(TINY, ["distill.dtype=bf16"])
    assert [p.key for p in e.value.problems] == ["distill.dtype"]
    assert load_recipe(TINY, ["distill.dtype=bf16", "compute.allow_slow_precision=true"]).distill.dtype == "bf16"
