"""What stages and core may know of a recipe: a small typed view, so nothing below the application needs the full
`Recipe` (which is assembled from the stage registry in rlhf_stack/app/recipe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rlhf_stack.core.models import ModelSpec
from rlhf_stack.core.sections import ClusterConfig, ComputeConfig, DataConfig


class RecipeView(Protocol):
    name: str
    seed: int
    cluster: ClusterConfig
    compute: ComputeConfig
    models: dict[str, ModelSpec]
    data: DataConfig

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the recipe are resolved against (the recipe file's folder)."""

    @property
    def run_path(self) -> Path:
        """The run folder."""

    @property
    def prompts_path(self) -> Path:
        """The prompt file named by `data.prompts`."""

    def resolve_path(self, value: str) -> Path:
        """A path the recipe names: absolute or `~` as given, otherwise relative to the recipe's folder."""

    def section(self, name: str) -> Any | None:
        """A stage's config section by stage name (`synthesize`, `distill`, ...), or None when absent."""
