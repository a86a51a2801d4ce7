"""Fixtures shared by the contract tests."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def reward_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a seeded bias-free `score` head, saved as the distill stage exports RMs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    torch.nn.init.normal_(rm.score.weight, std=0.5)
    rm.config.value_head_prefix = "score"
    out = tmp_path_factory.mktemp("rm") / "checkpoint"
    rm.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out
