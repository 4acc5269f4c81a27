"""Print `name==floor` for every direct dependency of the project (runtime and dev extra) with a `>=` floor."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
for requirement in requirements:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    if not match:
        continue
    name, _extras, spec = match.groups()
    floor = re.search(r">=\s*([0-9][^,;\s]*)", spec)
    if floor and name != "torch":  # torch: the build the Makefile installs (TORCH_SPEC), its floor
        print(f"{name}=={floor.group(1)}")
