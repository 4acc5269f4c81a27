"""Print `name==floor` for every runtime dependency of the project with a `>=` floor.

The dev extra (linters, type checker, browser driver, the datatrove reference) is not part of the
floors: those tools check the code, the code does not run on them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = project["dependencies"]
for requirement in requirements:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    if not match:
        continue
    name, _extras, spec = match.groups()
    floor = re.search(r">=\s*([0-9][^,;\s]*)", spec)
    if floor and name != "torch":  # torch: the build the Makefile installs (TORCH_SPEC), its floor
        print(f"{name}=={floor.group(1)}")
