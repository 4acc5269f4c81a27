"""The base of every parameter model (stage parameters, flow parameters, desk settings).

Unknown keys are errors: a misspelt key in a config file, a Prefect deployment's parameters or the
UI's form must not be silently ignored (`"max_step": 5` would otherwise train the default 5,000 steps).
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def first_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first thing pydantic found, in one line: `training.max_steps: Input should be ...`, or for
    an unknown key `unknown key 'max_step' (did you mean 'max_steps'?)`."""
    error = exc.errors()[0]
    where = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"unknown key '{where}'{_suggestion(model, error['loc'])}"
    return f"{where}: {error['msg']}" if where else error["msg"]


def _suggestion(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """` (did you mean 'x'?)` from the fields of the model the key was found in."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(model.model_fields)})"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside a field's annotation (`CleanParams`, `list[SourceThresholds]`, `X | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The numeric bounds of a field, from its `Field(ge=..., le=...)`: {'ge': 1, 'le': 10}."""
    found: dict[str, Any] = {}
    for item in model.model_fields[name].metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(item, key, None) is not None:
                found[key] = getattr(item, key)
    return found
