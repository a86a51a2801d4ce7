"""A hub dataset that cannot be reached: the error names the key and says how to provide the data."""

import os
import subprocess
import sys
from pathlib import Path


def test_an_unreachable_hub_dataset_says_how_to_provide_it():
    code = ("from pathlib import Path\n"
            "from stages.s4_evaluate.config import DataSource\n"
            "from stages.s4_evaluate.data_sources import load_source\n"
            "load_source(DataSource(source='allenai/reward-bench'), 'rewardbench', 'evaluate.rm_benchmarks.rewardbench',"
            " Path('.'))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # fail fast, no retries
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode != 0
    assert "RecipeError" in done.stderr and "evaluate.rm_benchmarks.rewardbench.source" in done.stderr
    assert "download it on a connected machine" in done.stderr and "split='filtered'" in done.stderr
