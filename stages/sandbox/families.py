"""Verifiable prompt families: a base task plus one to three compatible constraints, generated from a seed.

`write_sandbox_prompts(path, seed, count)` writes two files:

- `path`: an ordinary prompt file (`PromptRecord` JSONL: id, prompt = instruction + constraint sentences,
  category = the constraint kinds joined by '+'), which a recipe names as `data.prompts` and splits with its
  usual `data.splits`;
- `constraints_path(path)` (`<stem>.constraints.jsonl` beside it): per id, the task's instruction and the
  constraints as JSON, which the verifier reads to check answers.

Prompt `index` of a seed depends only on (seed, index), so a longer file extends a shorter one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.prompts import load_prompts
from rlhf_stack.core.records import PromptRecord, write_jsonl
from stages.sandbox.constraints import (
    KINDS, BulletCount, Constraint, EndsWith, ForbiddenWords, HighlightCount, IncludeKeywords, MaxWords, MinWords,
    ParagraphCount, StartsWith, compatible, constraint_from_json,
)
from stages.sandbox.tasks import TASKS, Task

CONSTRAINTS_PER_PROMPT = (1, 2, 3)  # drawn uniformly
# Phrases are single sentences without commas, so the comma and keyword repairs cannot break them.
OPENINGS = ("Sure thing.", "Great question.", "Here is my answer.", "Let me explain.", "Happy to help.")
ENDINGS = ("Is there anything else I can help with?", "Hope this helps.", "That is all for now.",
           "Thanks for reading.", "Let me know if you have more questions.")


@dataclass(frozen=True)
class SandboxPrompt:
    id: str
    instruction: str
    constraints: tuple[Constraint, ...]

    @property
    def prompt(self) -> str:
        return " ".join([self.instruction, *(c.describe() for c in self.constraints)])

    @property
    def category(self) -> str:
        return "+".join(sorted(c.kind for c in self.constraints))

    def record(self) -> PromptRecord:
        return PromptRecord(id=self.id, prompt=self.prompt, category=self.category)

    def to_json(self) -> dict:
        return {"id": self.id, "instruction": self.instruction, "constraints": [c.to_json() for c in self.constraints]}


def make_prompt(seed: int, index: int) -> SandboxPrompt:
    """Prompt `index` of the family generated from `seed`: a task and 1-3 compatible constraints."""
    rng = random.Random(f"rlhf-stack-sandbox:{seed}:{index}")  # str seeds hash the same on every platform
    task = rng.choice(TASKS)
    kinds: list[str] = []
    for _ in range(rng.choice(CONSTRAINTS_PER_PROMPT)):
        kinds.append(rng.choice([k for k in sorted(KINDS) if compatible([*kinds, k])]))
    taken: set[str] = set()  # topic words already required or forbidden in this prompt
    constraints = tuple(_SAMPLERS.get(kind, _plain(kind))(rng, task, taken) for kind in kinds)
    return SandboxPrompt(id=f"sbx{seed}-{index:05d}", instruction=task.instruction, constraints=constraints)


def sandbox_prompts(seed: int, count: int) -> list[SandboxPrompt]:
    return [make_prompt(seed, i) for i in range(count)]


def constraints_path(prompts_path: Path) -> Path:
    """The sidecar file holding the constraints of the prompts in `prompts_path`."""
    prompts_path = Path(prompts_path)
    return prompts_path.with_name(prompts_path.name.removesuffix(".jsonl") + ".constraints.jsonl")


def write_sandbox_prompts(path: Path, seed: int, count: int) -> tuple[Path, Path]:
    """Writes `count` prompts of the family `seed` to `path`, and their constraints beside it.

    Returns:
        The prompt file and the constraint file.
    """
    prompts = sandbox_prompts(seed, count)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [p.record() for p in prompts], exclude_none=True)  # a prompt file: {id, prompt, category}
    write_jsonl(constraints_path(path), [p.to_json() for p in prompts])
    return path, constraints_path(path)


def load_sandbox_prompts(prompts_path: Path, key: str = "data.prompts") -> dict[str, SandboxPrompt]:
    """The constraints of every prompt in `prompts_path`, from its sidecar; RecipeError listing all problems."""
    prompts, problems = _read(Path(prompts_path), key)
    if problems:
        raise RecipeError(str(prompts_path), problems)
    return prompts


def sandbox_problems(prompts_path: Path, key: str = "data.prompts") -> list[Problem]:
    """What keeps `prompts_path` from being judged by the verifier (for a recipe's `check`); [] when fine."""
    return _read(Path(prompts_path), key)[1]


def _read(prompts_path: Path, key: str) -> tuple[dict[str, SandboxPrompt], list[Problem]]:
    sidecar = constraints_path(prompts_path)
    if not prompts_path.is_file():
        return {}, [Problem(key, f"prompt file {prompts_path} does not exist", "paths are relative to the recipe")]
    if not sidecar.is_file():
        return {}, [Problem(key, f"{sidecar} does not exist: the verifier needs each prompt's constraints",
                            "write the prompts with stages.sandbox.write_sandbox_prompts")]
    found, problems = {}, []
    for line_no, line in enumerate(sidecar.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            item = SandboxPrompt(id=raw["id"], instruction=raw["instruction"],
                                 constraints=tuple(constraint_from_json(c) for c in raw["constraints"]))
            kinds = [c.kind for c in item.constraints]
            if not kinds or not compatible(kinds):
                raise ValueError(f"prompt {item.id!r} needs 1-3 constraints of distinct, compatible kinds, got {kinds}")
        except (ValueError, KeyError, TypeError) as e:
            problems.append(Problem(f"{key} ({sidecar}:{line_no})", f"not a sandbox prompt: {e!r}",
                                    "regenerate both files with write_sandbox_prompts"))
            continue
        found[item.id] = item
    records, record_problems = load_prompts(prompts_path, key)
    problems += record_problems
    missing = [r.id for r in records if r.id not in found]
    changed = [r.id for r in records if r.id in found and found[r.id].prompt != r.prompt]
    if missing:
        problems.append(Problem(key, f"{len(missing)} prompt(s) have no constraints in {sidecar}: {missing[:5]}",
                                "every prompt the verifier judges needs its constraints"))
    if changed:
        problems.append(Problem(key, f"{len(changed)} prompt(s) differ from what their constraints ask: {changed[:5]}",
                                "the prompt text was edited, or the sandbox changed; regenerate both files"))
    return found, problems


def _plain(kind: str) -> Callable[[random.Random, Task, set[str]], Constraint]:
    return lambda rng, task, taken: KINDS[kind]()


def _topic_words(rng: random.Random, task: Task, taken: set[str]) -> tuple[str, ...]:
    free = [w for w in task.topic_words if w not in taken]
    chosen = tuple(rng.sample(free, min(rng.choice((1, 2)), len(free))))
    taken.update(chosen)
    return chosen


_SAMPLERS: dict[str, Callable[[random.Random, Task, set[str]], Constraint]] = {
    "min_words": lambda rng, task, taken: MinWords(rng.choice((40, 60, 80, 120))),
    "max_words": lambda rng, task, taken: MaxWords(rng.choice((30, 50, 80, 120))),
    "include_keywords": lambda rng, task, taken: IncludeKeywords(_topic_words(rng, task, taken)),
    "forbidden_words": lambda rng, task, taken: ForbiddenWords(_topic_words(rng, task, taken)),
    "bullet_count": lambda rng, task, taken: BulletCount(rng.choice((2, 3, 4, 5))),
    "paragraph_count": lambda rng, task, taken: ParagraphCount(rng.choice((2, 3, 4))),
    "highlight_count": lambda rng, task, taken: HighlightCount(rng.choice((1, 2, 3))),
    "starts_with": lambda rng, task, taken: StartsWith(rng.choice(OPENINGS)),
    "ends_with": lambda rng, task, taken: EndsWith(rng.choice(ENDINGS)),
}
