"""Command-line options that take their help, default and bounds from the pydantic parameter models.

The models are the one source of truth. An option's default is None ("not given"), so an option
the user did not type never overrides a value from a `--config` file; the model's own default is
shown in `--help` and applied by the model. Bounds are checked by the model, and a value out of
bounds is one line naming the option.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape

from storage.errors import DraftflowError
from storage.params import bounds, first_problem

M = TypeVar("M", bound=BaseModel)


def option(model: type[BaseModel], name: str, *flags: str, help: str | None = None) -> Any:
    """A `typer.Option` described by `model.name`: its description, its default, its bounds."""
    field = model.model_fields[name]
    default = field.get_default(call_default_factory=True)
    limits = bounds(model, name)
    shown = [f"default: {_show(default)}"]
    if limits:
        signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        shown.append(", ".join(f"{signs[k]} {v}" for k, v in limits.items()))
    # escaped: Typer renders help as Rich markup, which would swallow "[default: ...]" as a tag
    text = escape(f"{help or field.description or ''} [{'; '.join(shown)}]")
    return typer.Option(*flags, help=text, show_default=False)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def read_config(path: Path | None) -> dict[str, Any]:
    """A JSON config file as a dict ({} without one); a file that cannot be read is one line."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DraftflowError(f"cannot read config file '{path}': {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DraftflowError(f"config file '{path}' is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DraftflowError(f"config file '{path}' must hold a JSON object of parameters")
    return data


def build(
    model: type[M],
    config: Path | None = None,
    sections: dict[str, Path | None] | None = None,
    /,
    **given: tuple[str, Any],
) -> M:
    """The model from its defaults, then the config file, then section files, then the options given.

    `sections` maps a field (`clean`) to a file with that field's model (`--clean-config`), which
    replaces the config file's section. `given` maps a dotted field path (`training.max_minutes`) to
    (the option's flag, its value); a value of None means the option was not given and changes nothing.
    """
    values = read_config(config)
    for section, file in (sections or {}).items():
        if file is not None:
            values[section] = read_config(file)
    for path, (_, value) in given.items():
        if value is not None:
            _set(values, path.split("."), value)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        for path, (flag, value) in given.items():
            if value is not None and (where == path or where.startswith(path + ".")):
                raise DraftflowError(f"invalid {flag} {_show(value)}: {error['msg']}") from None
        source = f"config file '{config}'" if config else "parameters"
        raise DraftflowError(f"{source}: {first_problem(exc, model)}") from None


def _set(values: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = values.get(part)
        if not isinstance(inner, dict):
            inner = values[part] = {}
        values = inner
    values[path[-1]] = value
