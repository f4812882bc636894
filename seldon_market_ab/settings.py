"""Runtime settings from ``model-settings.json`` ``parameters.extra``, validated by pydantic.

Seldon's agent rewrites ``model-settings.json`` on every load and keeps only
``parameters.extra``, into which it writes a ``Model``'s ``spec.parameters`` as strings.
So every setting is a flat key, strings convert (``"0.5"``, ``"true"``, ``"a,b,c"``), and a
misspelt key or a wrong value fails the load with a message that names the key, the value
and what is allowed, instead of being ignored.

Each runtime declares one subclass of :class:`ExtraSettings`; the README's settings tables
are rendered from those classes by :func:`markdown_table`.

Examples
--------
>>> class Example(ExtraSettings):
...     threads: int = Field(1, ge=1, description="worker threads")
...     arms: CommaList = Field(("a", "b"), description="arm names")
>>> Example.from_extra({"threads": "2", "arms": "x, y"})
Example(threads=2, arms=('x', 'y'))
>>> try:
...     Example.from_extra({"thread": "2"}, "my-model")
... except SettingsError as error:
...     print(error)
my-model: invalid parameters.extra: unknown key 'thread' = '2' (did you mean 'threads'?); allowed keys: threads, arms
>>> try:
...     Example.from_extra({"threads": "0"})
... except SettingsError as error:
...     print(error)
invalid parameters.extra: 'threads' = '0': Input should be greater than or equal to 1 (allowed: an integer >= 1)
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = ["CommaList", "ExtraSettings", "Field", "SettingsError", "extra_of", "markdown_table"]


class SettingsError(ValueError):
    """A ``parameters.extra`` that does not validate; MLServer then refuses to load the model."""


def _split_list(value: Any) -> Any:
    """``"a,b,c"`` or a JSON list in a string (what Seldon passes), or a real list."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if isinstance(value, list | tuple):
        return tuple(str(item).strip() for item in value if str(item).strip())
    return value


CommaList = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
"""A list of names, given as ``"a,b,c"``, ``'["a", "b"]'`` or a JSON list."""


def extra_of(model_settings) -> dict:
    """``parameters.extra`` of an MLServer ``ModelSettings`` (empty when unset)."""
    parameters = getattr(model_settings, "parameters", None)
    return dict((parameters and parameters.extra) or {})


class ExtraSettings(BaseModel):
    """Base class of a runtime's settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @classmethod
    def from_extra(cls, extra: Mapping | None, model: str = ""):
        """Validate ``extra``; raise :class:`SettingsError` naming every bad key, its value and what is allowed."""
        extra = dict(extra or {})
        try:
            return cls.model_validate(extra)
        except ValidationError as error:
            problems = "; ".join(_describe(cls, problem, extra) for problem in error.errors())
            prefix = f"{model}: " if model else ""
            raise SettingsError(f"{prefix}invalid parameters.extra: {problems}") from None


def _describe(cls: type[ExtraSettings], problem: dict, extra: dict) -> str:
    key = ".".join(str(part) for part in problem["loc"][:1])
    value = extra.get(key, problem["input"])  # as given, before any conversion
    if problem["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, cls.model_fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{key}' = {value!r}{hint}; allowed keys: {', '.join(cls.model_fields)}"
    message = problem["msg"].removeprefix("Value error, ")
    if not key:  # a check across several keys
        return message
    allowed = allowed_values(cls.model_json_schema()["properties"][key])
    return f"'{key}' = {value!r}: {message} (allowed: {allowed})"


def allowed_values(schema: dict) -> str:
    """What a JSON-schema property admits, in words (for error messages and the README)."""
    if "anyOf" in schema:
        options = [allowed_values(option) for option in schema["anyOf"] if option.get("type") != "null"]
        return " or ".join(options) + " (or unset)"
    if "enum" in schema:
        return " or ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return "comma-separated names or a JSON list"
    if kind == "boolean":
        return "`true` or `false`"
    if kind in ("integer", "number"):
        low = ("(", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else ("[", schema.get("minimum"))
        high = (")", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else ("]", schema.get("maximum"))
        noun = "an integer" if kind == "integer" else "a number"
        if low[1] is None and high[1] is None:
            return noun
        if high[1] is None:
            return f"{noun} {'>' if low[0] == '(' else '>='} {low[1]}"
        if low[1] is None:
            return f"{noun} {'<' if high[0] == ')' else '<='} {high[1]}"
        return f"{noun} in {low[0]}{low[1]}, {high[1]}{high[0]}"
    return "a string"


def markdown_table(cls: type[ExtraSettings], keys=None) -> str:
    """The README table of a settings class (or of some of its ``keys``): key, default, allowed values, meaning."""
    properties = cls.model_json_schema()["properties"]
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, field in cls.model_fields.items():
        if keys is not None and key not in keys:
            continue
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        shown = "unset" if default is None else "`\"\"`" if default == "" else f"`{default}`"
        lines.append(f"| `{key}` | {shown} | {allowed_values(properties[key])} | {field.description or ''} |")
    return "\n".join(lines)
