"""Loading YAML/JSON into specs with errors that name the file, the field and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import difflib
import functools
import typing

from pydantic import BaseModel, ValidationError

from planner.catalog import parse_cache
from planner.errors import SpecError

M = TypeVar("M", bound=BaseModel)


@functools.cache
def _loaders() -> tuple[type, type]:
    """(libyaml's safe loader, a safe loader that records key lines); PyYAML is imported
    here, on the first parse, so a warm parse cache never imports it."""
    import yaml

    class LineLoader(yaml.SafeLoader):
        """SafeLoader that remembers the line of every mapping key (for error messages)."""

    def construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict:
        mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
        mapping["__lines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value}
        return mapping

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                               construct_mapping)
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader), LineLoader


def _strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items() if k != "__lines__"}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


def line_of(obj: Any, loc: tuple) -> int | None:
    """Line of the key at ``loc`` in a line-annotated YAML document (None if unknown)."""
    line = None
    for part in loc:
        if isinstance(obj, dict):
            line = obj.get("__lines__", {}).get(part, line)
            obj = obj.get(part)
        elif isinstance(obj, list) and isinstance(part, int) and part < len(obj):
            obj = obj[part]
        else:
            break
    return line


def read_yaml(path: Path, with_lines: bool = False) -> tuple[Any, Any]:
    """Parse a YAML file safely: (data, data annotated with key lines or None).

    The annotated form uses a pure-Python loader, so it is only built on request (to
    put line numbers into error messages); the fast path uses libyaml's safe loader, or
    the parse cache (parse_cache.py) when the file has not changed since it was parsed.
    """
    if not with_lines:
        cached = parse_cache.get(path)
        if cached is not None:
            return cached, None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    import yaml

    fast, with_keys = _loaders()
    try:
        if with_lines:
            annotated = yaml.load(text, Loader=with_keys)  # noqa: S506 - SafeLoader subclass
            data = _strip_lines(annotated)
        else:
            data, annotated = yaml.load(text, Loader=fast), None  # noqa: S506 - safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        raise SpecError(f"{path}: file is empty")
    if not with_lines:
        parse_cache.put(path, data)
    return data, annotated


def format_validation_error(err: ValidationError, where: str, annotated: Any = None,
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem: 'where line N: field.path: message (got VALUE)'."""
    parts = []
    errors = err.errors()
    tags = {"str", "int", "float", "bool", "list", "dict"}
    for e in errors:
        # A union field (e.g. model: preset name | inline spec) reports one error per branch:
        # drop the branch tags, and the scalar branch when the spec branch says more.
        loc = tuple(p for i, p in enumerate(e["loc"]) if not (isinstance(p, str) and (
            p.startswith("function-") or (p[:1].isupper() and p.isidentifier()
                                          and i < len(e["loc"]) - 1))))
        if e["loc"] and e["loc"][-1] in tags and len(errors) > 1:
            continue
        field = ".".join(str(p) for p in loc)
        line = line_of(annotated, loc) if annotated is not None else None
        at = f"{where} line {line}" if line else where
        text = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"{at}: unknown key '{field}'{_suggest(field, model)}"
        elif not field:
            msg = f"{at}: {text}"
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            msg = f"{at}: {field}: {text}{shown}"
        parts.append(msg)
    return "; ".join(parts)


def _field_names(model: type[BaseModel] | None, seen: set | None = None) -> set[str]:
    """Every field name of a spec and the specs nested in it."""
    if model is None:
        return set()
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for f in model.model_fields.values():
        for arg in (*typing.get_args(f.annotation), f.annotation):
            for inner in (*typing.get_args(arg), arg):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _field_names(inner, seen)
    return names


def _suggest(field: str, model: type[BaseModel] | None) -> str:
    """'; did you mean: x?' for a typo'd key, from the spec's own field names."""
    key = field.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, sorted(_field_names(model)), n=3, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def load_spec(model: type[M], path: Path) -> M:
    """Read a YAML file into a spec, raising SpecError that names file, line and field."""
    data, _ = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError:
        _, annotated = read_yaml(path, with_lines=True)
        return validate_spec(model, data, str(path), annotated)


def validate_spec(model: type[M], data: dict, where: str, annotated: Any = None) -> M:
    """Validate a dict into a spec; errors name ``where`` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, where, annotated, model)) from None
