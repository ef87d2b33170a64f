"""Loading YAML/JSON into specs with errors that name the file, the field and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import functools
import typing

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic loads when a spec is validated, not to read a YAML file
    from pydantic import BaseModel, ValidationError

from planner.catalog import parse_cache
from planner.errors import SpecError

M = TypeVar("M", bound="BaseModel")


# Limits on what planner reads (docs/errors.md): a model, profile or scenario file is a few
# KiB; these stop a hostile or mistaken file (an alias bomb, a 200 MB dump) before it costs
# memory or minutes.
MAX_FILE_BYTES = 4 * 2**20  # 4 MiB, for YAML and JSON inputs alike
MAX_VALUES = 100_000  # values in a document after expanding YAML aliases
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_DIGITS = 30  # digits of an integer (10**30 already exceeds every shape and count)

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.cache
def _loader() -> type:
    """libyaml's safe loader (the pure-Python one if libyaml is missing); PyYAML is imported
    here, on the first parse, so a warm parse cache never imports it."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def check_size(path: Path, kind: str = "YAML") -> None:
    """SpecError if the file is larger than MAX_FILE_BYTES (a stat; nothing is read)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise SpecError(f"{path}: file is {_size_text(size)}; planner reads {kind} files of "
                        f"at most {_size_text(MAX_FILE_BYTES)}")


def read_text(path: Path, kind: str = "YAML") -> str:
    """The file as UTF-8 text, at most MAX_FILE_BYTES; a one-line SpecError otherwise."""
    check_size(path, kind)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows meanwhile
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{path}: file is over {_size_text(MAX_FILE_BYTES)}; planner reads "
                        f"{kind} files of at most {_size_text(MAX_FILE_BYTES)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                        f"{e.start}); expected a {kind} file") from None


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _count_values(text: str, where: str) -> None:
    """SpecError once the text holds more than MAX_VALUES values (scalars, aliases,
    collections), counted from libyaml's event stream and stopped at the limit: a dense
    4 MiB list fails in a fraction of a second instead of composing millions of nodes."""
    import yaml

    loader = _loader()(text)
    kinds = (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)
    n = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, kinds):
                n += 1
                if n > MAX_VALUES:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    at = f" line {line}" if line else ""
                    raise SpecError(f"{where}{at}: the document has more than "
                                    f"{MAX_VALUES:,} values; planner reads at most "
                                    f"{MAX_VALUES:,}")
    finally:
        loader.dispose()


def _check_nodes(root: Any, where: str) -> None:
    """Reject what a safe loader accepts but planner must not: duplicate keys, aliases that
    expand past MAX_VALUES or refer to themselves, nesting past MAX_DEPTH, huge integers.

    Walks the composed node graph once per distinct node (an alias is a shared node), so an
    alias bomb costs what its text costs, not what it expands to."""
    import yaml

    expanded: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
    active: set[int] = set()

    def visit(node: Any, depth: int) -> int:
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in active:
            raise SpecError(f"{where} line {_line(node)}: a YAML alias refers to the "
                            "collection that contains it; recursive documents are not "
                            "accepted")
        if depth > MAX_DEPTH:
            raise SpecError(f"{where} line {_line(node)}: nested more than {MAX_DEPTH} levels "
                            f"deep; planner reads at most {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            digits = sum(ch.isdigit() for ch in node.value)
            if node.tag == _INT_TAG and digits > MAX_DIGITS:
                raise SpecError(f"{where} line {_line(node)}: integer with {digits} digits is "
                                f"too large; planner reads integers of at most {MAX_DIGITS} "
                                "digits")
            expanded[key] = 1
            return 1
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            children = []
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG:
                    if (k.tag, k.value) in first:
                        raise SpecError(f"{where} line {_line(k)}: duplicate key '{k.value}' "
                                        f"(first at line {first[k.tag, k.value]}); give each "
                                        "key once")
                    first[k.tag, k.value] = _line(k)
                children += (k, v)
        else:
            children = node.value
        for child in children:
            total += visit(child, depth + 1)
            if total > MAX_VALUES:
                raise SpecError(f"{where} line {_line(node)}: the document expands to more "
                                f"than {MAX_VALUES:,} values (YAML aliases repeat what they "
                                f"refer to); planner reads at most {MAX_VALUES:,}")
        active.discard(key)
        expanded[key] = total
        return total

    visit(root, 0)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def read_yaml(path: Path, with_lines: bool = False) -> tuple[Any, Any]:
    """Parse a YAML file safely: (data, the composed node tree for ``line_of``, or None).

    The fast path uses the parse cache (parse_cache.py) when the file has not changed since
    it was parsed; otherwise libyaml's safe loader, with the limits above checked on the
    composed nodes before anything is constructed. ``with_lines`` also returns the node
    tree, whose marks give the line of every key (for error messages).
    """
    check_size(path)
    if not with_lines:
        cached = parse_cache.get(path)
        if cached is not None:
            return cached, None
    text = read_text(path)
    import yaml

    loader = None
    try:
        if len(text) > 2 * MAX_VALUES:  # (a value takes at least 2 characters: "1,")
            _count_values(text, str(path))
        loader = _loader()(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError(f"{path}: file is empty")
        _check_nodes(node, str(path))
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}:" if mark else ""
        raise SpecError(f"{path}:{where} is not valid YAML "
                        f"({_one_line(e.problem or e.context or 'unreadable')})") from None
    except yaml.reader.ReaderError as e:
        raise SpecError(f"{path}: is not valid YAML text (character #x{e.character:04x} at "
                        f"offset {e.position}: {e.reason}); expected a YAML file") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: is not valid YAML ({_one_line(e)})") from None
    except SpecError:
        raise
    except (ValueError, OverflowError, RecursionError) as e:  # defensive: stay one line
        raise SpecError(f"{path}: cannot read a value ({_one_line(e)})") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise SpecError(f"{path}: file is empty")
    parse_cache.put(path, data, text)  # (also after with_lines: it repairs a bad entry)
    return data, node if with_lines else None


def line_of(tree: Any, loc: tuple, whole: bool = False) -> int | None:
    """Line of the key at ``loc`` in a node tree from ``read_yaml(with_lines=True)``: of as
    much of the path as the tree holds, or (``whole``) None unless it holds all of it."""
    if tree is None:
        return None
    import yaml

    line, node = None, tree
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value
                          if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if match is None:
                return None if whole else line
            line, node = _line(match[0]), match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            return None if whole else line
    return line


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
        field = ".".join(_shown(p) for p in loc)
        line = line_of(annotated, loc) if annotated is not None else None
        at = f"{where} line {line}" if line else where
        text = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"{at}: unknown key '{field}'{_suggest(field, model)}"
        elif not field:
            msg = f"{at}: {text}"
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else \
                f" (got {_shown(got, quote=True)})"
            msg = f"{at}: {field}: {text}{shown}"
        parts.append(msg)
    return "; ".join(parts)


def _shown(value: Any, quote: bool = False, limit: int = 60) -> str:
    """A key or value as it can be shown on one line: printable, at most ``limit`` chars."""
    text = repr(value) if quote or not (isinstance(value, (str, int)) and
                                        str(value).isprintable()) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _field_names(model: type[BaseModel] | None, seen: set | None = None) -> set[str]:
    """Every field name of a spec and the specs nested in it."""
    if model is None:
        return set()
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    from pydantic import BaseModel

    names = set(model.model_fields)
    for f in model.model_fields.values():
        for arg in (*typing.get_args(f.annotation), f.annotation):
            for inner in (*typing.get_args(arg), arg):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _field_names(inner, seen)
    return names


def _suggest(field: str, model: type[BaseModel] | None) -> str:
    """'; did you mean: x?' for a typo'd key, from the spec's own field names."""
    import difflib  # only on a mistake: not on every start-up

    key = field.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, sorted(_field_names(model)), n=3, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def load_spec(model: type[M], path: Path) -> M:
    """Read a YAML file into a spec, raising SpecError that names file, line and field."""
    from pydantic import ValidationError

    data, _ = read_yaml(path)
    if isinstance(data, dict):
        try:
            return model.model_validate(data)
        except ValidationError:
            pass
    # An error is reported from a fresh parse, never from the parse cache's copy (which a
    # damaged entry could have changed): the file is read again, with its lines.
    data, annotated = read_yaml(path, with_lines=True)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level")
    return validate_spec(model, data, str(path), annotated)


def validate_spec(model: type[M], data: dict, where: str, annotated: Any = None) -> M:
    """Validate a dict into a spec; errors name ``where`` and the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, where, annotated, model)) from None
