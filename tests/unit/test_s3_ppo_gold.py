"""Gold rewards of PPO rollouts: the exact verifier's scores, by hand, and only for sandbox prompt files."""

import pytest

from rlhf_stack.core.records import write_jsonl
from stages.s3_ppo.gold import VerifierGold, sandbox_gold
from stages.sandbox import SandboxPrompt, Verifier, load_sandbox_prompts, write_sandbox_prompts
from stages.sandbox.constraints import Lowercase, MinWords, NoCommas

P1 = SandboxPrompt("p1", "Greet a friend.", (Lowercase(), NoCommas(), MinWords(5)))
P2 = SandboxPrompt("p2", "Say hi.", (Lowercase(),))


def test_gold_scores_each_sample_against_its_own_prompt():
    gold = VerifierGold(Verifier({"p1": P1, "p2": P2}), prompt_ids=["p1", "p2"])
    # sample 0: p1, 3 of 3 met -> 10; sample 1: p1, 2 of 3 -> 7; sample 2: p2, 0 of 1 -> 1
    texts = ["hello there my good friend", "hello, there my good friend", "Hi"]
    stats = gold([0, 0, 1], texts)
    assert stats["gold_mean"] == pytest.approx((10 + 7 + 1) / 3)
    assert stats["compliance_mean"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # the same text scores differently under the other prompt: p2 only asks for lowercase
    assert gold([1], ["hello, friend"])["gold_mean"] == pytest.approx(10)


def test_sandbox_gold_only_for_prompt_files_with_constraints(tmp_path):
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, [{"id": "a", "prompt": "Hi"}])
    assert sandbox_gold(plain, ["a"]) is None
    prompts_file, _ = write_sandbox_prompts(tmp_path / "sandbox.jsonl", seed=0, count=4)
    ids = [p.id for p in load_sandbox_prompts(prompts_file).values()]
    gold = sandbox_gold(prompts_file, ids)
    exact = Verifier.from_prompt_file(prompts_file)
    stats = gold([2], ["some answer"])
    assert stats["gold_mean"] == pytest.approx(exact.true_score(ids[2], "some answer"))
