"""Verifiable prompt families: deterministic generation, compatible constraints, the prompt file and its sidecar."""

import json
from collections import Counter
from pathlib import Path

import pytest

from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.prompts import load_prompts, split_prompts
from stages.sandbox.constraints import KINDS, IncludeKeywords, Lowercase, compatible
from stages.sandbox.families import (
    ENDINGS, OPENINGS, SandboxPrompt, constraints_path, load_sandbox_prompts, make_prompt, sandbox_problems,
    sandbox_prompts, write_sandbox_prompts,
)
from stages.sandbox.tasks import TASKS
from rlhf_stack.core.sections import SplitFractions

REPO = Path(__file__).resolve().parents[2]


def test_generation_is_deterministic_and_each_prompt_depends_only_on_seed_and_index():
    assert sandbox_prompts(3, 40) == sandbox_prompts(3, 40)
    assert sandbox_prompts(3, 10) == sandbox_prompts(3, 40)[:10]
    assert [p.prompt for p in sandbox_prompts(4, 40)] != [p.prompt for p in sandbox_prompts(3, 40)]
    assert make_prompt(3, 7).id == "sbx3-00007"


def test_prompts_combine_one_to_three_compatible_constraints_of_every_kind():
    prompts = sandbox_prompts(0, 400)
    assert Counter(len(p.constraints) for p in prompts).keys() == {1, 2, 3}
    assert all(compatible([c.kind for c in p.constraints]) for p in prompts)
    assert {c.kind for p in prompts for c in p.constraints} == set(KINDS)
    assert len({p.instruction for p in prompts}) >= 30


def test_keyword_constraints_draw_disjoint_words_from_the_task_topic():
    for p in sandbox_prompts(1, 300):
        task = next(t for t in TASKS if t.instruction == p.instruction)
        drawn = [w for c in p.constraints for w in getattr(c, "words", ())]
        assert set(drawn) <= set(task.topic_words) and len(drawn) == len(set(drawn))


def test_data_that_repairs_rely_on():
    # the keyword repair writes "This answer covers ... and ...": no topic word may be among those words
    assert not {w for t in TASKS for w in t.topic_words} & {"this", "answer", "covers", "and"}
    assert all(len(t.topic_words) >= 4 and all(w.isalpha() and w.islower() for w in t.topic_words) for t in TASKS)
    # phrases are one sentence without commas, so the comma and keyword repairs cannot break them
    for phrase in OPENINGS + ENDINGS:
        assert "," not in phrase and phrase[-1] in ".?!" and not any(ch in phrase[:-1] for ch in ".?!")


def test_prompt_text_and_category():
    item = SandboxPrompt("x1", "Explain tides.", (Lowercase(), IncludeKeywords(("moon",))))
    assert item.prompt == ("Explain tides. Write your whole answer in lowercase letters, without a single capital "
                           'letter. Use the word "moon" in your answer.')
    assert item.record().model_dump(exclude_none=True) == {"id": "x1", "prompt": item.prompt,
                                                            "category": "include_keywords+lowercase"}


def test_written_files_load_as_prompts_split_by_the_recipe_and_as_constraints(tmp_path):
    prompts_file, sidecar = write_sandbox_prompts(tmp_path / "sb.jsonl", seed=5, count=30)
    assert sidecar == constraints_path(prompts_file) == tmp_path / "sb.constraints.jsonl"
    records, problems = load_prompts(prompts_file)
    assert problems == [] and len(records) == 30
    splits = split_prompts(records, SplitFractions(synthesize=0.6, ppo=0.3, evaluate=0.1), seed=0)
    assert sum(len(s) for s in splits.values()) == 30
    loaded = load_sandbox_prompts(prompts_file)
    assert list(loaded.values()) == sandbox_prompts(5, 30)
    assert sandbox_problems(prompts_file) == []


def test_sidecar_problems_are_reported_with_the_fix(tmp_path):
    prompts_file, sidecar = write_sandbox_prompts(tmp_path / "sb.jsonl", seed=5, count=4)
    lines = sidecar.read_text().splitlines()

    sidecar.write_text("\n".join(lines[1:]) + "\n")  # first prompt has no constraints
    assert "1 prompt(s) have no constraints" in str(sandbox_problems(prompts_file)[0])

    edited = json.loads(lines[0])
    edited["constraints"] = [{"kind": "lowercase"}]
    sidecar.write_text("\n".join([json.dumps(edited), *lines[1:]]) + "\n")
    [problem] = sandbox_problems(prompts_file)
    assert "differ from what their constraints ask: ['sbx5-00000']" in problem.message
    assert "regenerate both files" in problem.fix

    sidecar.write_text('{"id": "a", "instruction": "b", "constraints": [{"kind": "shouting"}]}\n')
    assert "unknown constraint kind 'shouting'" in str(sandbox_problems(prompts_file)[0])

    for kinds in ([], ["lowercase", "lowercase"], ["lowercase", "uppercase"]):  # none, twice, conflicting
        sidecar.write_text(json.dumps({"id": "a", "instruction": "b", "constraints": [{"kind": k} for k in kinds]}))
        assert "needs 1-3 constraints of distinct, compatible kinds" in str(sandbox_problems(prompts_file)[0])

    sidecar.unlink()
    with pytest.raises(RecipeError, match="sb.constraints.jsonl does not exist"):
        load_sandbox_prompts(prompts_file)


@pytest.mark.parametrize("name, count", [("sandbox_prompts", 300), ("sandbox_power", 1000), ("sandbox_power2k", 2000)])
def test_shipped_sandbox_prompts_are_what_the_generator_writes(tmp_path, name, count):
    """recipes/data/<name>*.jsonl were written by write_sandbox_prompts(seed=0, count=count); a change to the tasks,
    constraints or sentences must regenerate them."""
    shipped = REPO / f"recipes/data/{name}.jsonl"
    fresh, fresh_sidecar = write_sandbox_prompts(tmp_path / f"{name}.jsonl", seed=0, count=count)
    assert shipped.read_text() == fresh.read_text()
    assert constraints_path(shipped).read_text() == fresh_sidecar.read_text()
