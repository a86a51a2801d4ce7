"""Per-iteration metrics of a PPO run: one JSON line each in metrics.jsonl, and the same scalars in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rlhf_stack.core.records import read_json_lines

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_NOT_SCALARS = ("iteration", "episode")


class MetricsLog:
    """Appends iteration records; a resumed run first drops the records of iterations it will redo."""

    def __init__(self, out_dir: Path, start_iteration: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.path = out_dir / METRICS_FILE
        out_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["iteration"] < start_iteration]
        self.path.write_text("".join(line + "\n" for line in kept))
        # purge_step hides events a killed run wrote past its last saved state.
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR), purge_step=start_iteration or None)

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name not in _NOT_SCALARS and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"ppo/{name}", value, record["iteration"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(out_dir: Path) -> list[dict]:
    return read_json_lines(out_dir / METRICS_FILE, missing_ok=True)
