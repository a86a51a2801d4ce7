from rlhf_stack.core.prompts import split_prompts
from rlhf_stack.core.records import PromptRecord
from rlhf_stack.core.sections import SplitFractions


def test_splits_are_disjoint_sized_and_order_independent():
    records = [PromptRecord(id=f"p{i}", prompt=f"q{i}") for i in range(20)]
    fractions = SplitFractions(synthesize=0.5, ppo=0.25, evaluate=0.25)
    a = split_prompts(records, fractions, seed=0)
    b = split_prompts(list(reversed(records)), fractions, seed=0)
    assert {k: len(v) for k, v in a.items()} == {"synthesize": 10, "ppo": 5, "evaluate": 5}
    assert a == b
    ids = [r.id for split in a.values() for r in split]
    assert sorted(ids) == sorted(r.id for r in records)
    assert split_prompts(records, fractions, seed=1) != a
