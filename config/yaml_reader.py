"""Read one environment file (and the files it extends) into a merged, interpolated document.

Rules:
- YAML is parsed with PyYAML's safe machinery only; `<<` merge keys, anchors and aliases work.
- The top level must be a mapping (an empty file is an empty mapping); duplicate keys are errors.
- Scalar values (never keys) are interpolated: `${VAR}`, `${VAR:-default}` (default used when VAR
  is unset or empty, as in the shell) and `$${` for a literal `${`. A plain (unquoted) scalar gets
  its type re-resolved afterwards (`${TTL:-300}` -> 300, `${X:-}` -> None); a quoted one stays a string.
- A top-level `extends: base` (relative to the file, `.yaml` optional) names a base file, which may
  extend another. Mappings merge key by key; any other overlay value replaces the base's. A base
  must lie in the directory of the file asked for (or below it); a cycle is an error.
- Limits, so that a hostile or broken file is refused quickly instead of exhausting memory or the
  stack: 1 MiB per file (MAX_FILE_BYTES; no more is ever read), 64 levels of nesting (MAX_DEPTH),
  1,000 aliases (MAX_ALIASES) and 100,000 values with aliases expanded (MAX_VALUES: an "alias bomb"
  has a few nodes standing for billions). Nesting and values are counted on the parser's events as
  the composer takes them, before any Python value is built; each anchor's expanded size is
  remembered, so the counting is linear. A refusal names the line and key path where the limit was
  passed (but for the file's size).
- Every problem in every file is collected and raised together as one `ConfigError`.
- The result remembers which file and line defined each key path, for error messages further on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent, CollectionEndEvent, CollectionStartEvent, Event, MappingStartEvent, NodeEvent, ScalarEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from core.errors import ConfigError, ConfigProblem, KeyPath

Origin = tuple[Path, int]

# Limits on one file. Ours are at most 9 KB, 6 levels deep and 513 values, with no aliases: each
# limit is far above that, yet low enough that reaching it costs under a second and a few tens of MB.
MAX_FILE_BYTES = 1024 * 1024  # 1 MiB, ~100x base.yaml: at most this much is ever read into memory
MAX_DEPTH = 64  # levels: the composer and our builder recurse per level, and Python allows ~1,000 frames
MAX_ALIASES = 1_000  # a hand-written file needs a few dozen; thousands are generated, and each is work
# Keys and values, aliases expanded: an export of 300 value types (the scale the product is built
# for, bench/run.py --scale) holds ~45,000, and a file of MAX_FILE_BYTES as dense ~70,000.
MAX_VALUES = 100_000

# `$${` is the escape; a `${` not followed by a valid reference is caught so typos don't pass silently.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_RESOLVER = Resolver()
_MAP_TAG, _SEQ_TAG, _MERGE_TAG = (f"tag:yaml.org,2002:{kind}" for kind in ("map", "seq", "merge"))


@dataclass(frozen=True)
class ReadResult:
    name: str
    files: tuple[Path, ...]
    data: dict
    origins: Mapping[KeyPath, Origin] = field(default_factory=dict, repr=False, compare=False)

    def locate(self, path: KeyPath) -> tuple[Path, int | None]:
        """File and 1-based line that defined `path` in the merged document, falling back to the
        longest defined prefix of the path, then to the requested file with line None."""
        for end in range(len(path), 0, -1):
            if (origin := self.origins.get(tuple(path[:end]))) is not None:
                return origin
        return self.files[-1], None


def read_environment(path: Path, environ: Mapping[str, str] | None = None) -> ReadResult:
    """Read one environment file and the files it extends; raise ConfigError listing EVERY
    problem found (not just the first)."""
    path = Path(path)
    layer = _read_chain(path, os.environ if environ is None else environ, ())
    if layer.problems:
        raise ConfigError(layer.problems)
    return ReadResult(path.stem, layer.files, layer.data, layer.origins)


@dataclass
class _Layer:
    files: tuple[Path, ...]
    data: dict
    origins: dict[KeyPath, Origin]
    problems: list[ConfigProblem]


def _read_chain(file: Path, environ: Mapping[str, str], chain: tuple[Path, ...]) -> _Layer:
    """Read `file`, then the base it extends (recursively), and merge the base under it."""
    layer = _read_file(file, environ)
    if "extends" not in layer.data:
        return layer
    base_name = layer.data.pop("extends")
    line = layer.origins[("extends",)][1]
    layer.origins = {path: origin for path, origin in layer.origins.items() if path[:1] != ("extends",)}
    if any(problem.path == ("extends",) for problem in layer.problems):
        return layer  # e.g. an unset variable: following it would only add a confusing second error

    def problem(reason: str) -> _Layer:
        layer.problems.append(ConfigProblem(file, ("extends",), reason, line))
        return layer

    if not isinstance(base_name, str) or not base_name:
        return problem(f"extends must be a file name, not {base_name!r}")
    if not base_name.endswith((".yaml", ".yml")):
        base_name += ".yaml"
    base = file.parent / base_name
    directory = (chain[0] if chain else file).parent.resolve()  # of the file asked for
    if not base.resolve().is_relative_to(directory):
        return problem(f"extends must name a file in {directory} (or below it), not {base_name}")
    if base.resolve() in {seen.resolve() for seen in (*chain, file)}:
        return problem("extends cycle: " + " -> ".join(p.name for p in (*chain, file, base)))
    if not base.is_file():
        return problem(f"extends names a file that does not exist: {base_name}")

    below = _read_chain(base, environ, (*chain, file))
    data = _merge(below.data, layer.data)
    # A path that exists in the overlay was defined (or last touched) there; anything else came from below.
    origins = {p: layer.origins.get(p) or below.origins[p] for p in _paths(data, ())}
    return _Layer(below.files + layer.files, data, origins, below.problems + layer.problems)


def _merge(base: object, overlay: object) -> object:
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(base[key], value) if key in base else value
    return merged


def _paths(value: object, path: KeyPath) -> Iterator[KeyPath]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield path + (key,)
        yield from _paths(child, path + (key,))


def _read_file(file: Path, environ: Mapping[str, str]) -> _Layer:
    def failed(reason: str, line: int | None = None) -> _Layer:
        return _Layer((file,), {}, {}, [ConfigProblem(file, (), reason, line)])

    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)  # enough to tell, and no more (even from /dev/zero)
    except FileNotFoundError:
        return failed("file not found")
    except OSError as error:
        return failed(f"cannot read the file: {error}")
    if len(raw) > MAX_FILE_BYTES:
        return failed(f"the file is larger than {MAX_FILE_BYTES / 2**20:g} MiB (the limit)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return failed(f"cannot read the file: {error}")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        return failed(f"malformed YAML: {_describe(error)}", mark and mark.line + 1)
    except _LimitPassed as passed:
        return _Layer((file,), {}, {}, [ConfigProblem(file, passed.path, passed.reason, passed.line)])
    if root is None:
        return _Layer((file,), {}, {}, [])
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        return failed(f"the file must hold a mapping, not {kind}", _line(root))
    builder = _Builder(file, environ)
    data = builder.build(root, ())
    return _Layer((file,), data if isinstance(data, dict) else {}, builder.origins, builder.problems)


class _Loader(yaml.SafeLoader):
    """SafeLoader that enforces the limits on each event the composer takes (so it never recurses
    past MAX_DEPTH), and remembers explicitly tagged scalars, so `!!str ${PORT}` is not re-resolved."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.limits = _Limits()

    def get_event(self) -> Event:
        event = super().get_event()
        self.limits.see(event)
        return event

    def compose_scalar_node(self, anchor: str | None) -> ScalarNode:
        explicit = self.peek_event().tag is not None
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = explicit
        return node


class _LimitPassed(Exception):
    def __init__(self, reason: str, line: int, path: KeyPath):
        super().__init__(reason)
        self.reason, self.line, self.path = reason, line, path


@dataclass
class _Open:
    """A collection whose events are still coming."""

    anchor: str | None
    path: KeyPath
    is_mapping: bool
    line: int
    level: int  # 1 for the top-level collection
    values_before: int  # the document's count of values before it; its size: the count at its end minus this
    deepest: int  # the deepest level reached inside it, aliases expanded
    items: int = 0  # in a mapping, keys and values alternate: an even count means a key comes next
    key: object = None  # in a mapping, the last key seen

    def child_path(self) -> KeyPath:
        if not self.is_mapping:
            return self.path + (self.items,)
        return self.path + (self.key,) if self.items % 2 else self.path  # a key's path is its mapping's


class _Limits:
    """Counts the document's values, aliases expanded, and its nesting, event by event; raises
    _LimitPassed at the first limit passed, naming the line and key path. An alias costs what its
    anchor stands for, remembered when the anchor's node ended, so the counting itself is linear."""

    def __init__(self) -> None:
        self.open: list[_Open] = []
        self.anchors: dict[str, tuple[int, int, int]] = {}  # name -> values, levels, line
        self.values = self.aliases = 0

    def see(self, event: Event) -> None:
        if isinstance(event, CollectionEndEvent):
            self._end()
        elif isinstance(event, NodeEvent):
            self._node(event)

    def _node(self, event: NodeEvent) -> None:
        parent = self.open[-1] if self.open else None
        if parent and parent.is_mapping and parent.items % 2 == 0:
            parent.key = event.value if isinstance(event, ScalarEvent) else "?"
        path, line = (parent.child_path() if parent else ()), event.start_mark.line + 1
        level = len(self.open) + isinstance(event, CollectionStartEvent)  # the deepest this node goes
        values, note = 1, ""
        if isinstance(event, AliasEvent):
            self.aliases += 1
            # An undefined alias, or one to an enclosing node (not ended yet), counts as one value:
            # the composer or the builder reports it.
            if event.anchor in self.anchors:
                values, levels, anchor_line = self.anchors[event.anchor]
                level += levels
                note = f": the alias *{event.anchor} stands for {values:,} values, {levels} levels deep"
                note += f" (anchor on line {anchor_line})"
        self.values += values
        if self.aliases > MAX_ALIASES:
            raise _LimitPassed(f"more than {MAX_ALIASES:,} aliases (the limit)", line, path)
        if level > MAX_DEPTH:
            raise _LimitPassed(f"nested more than {MAX_DEPTH} levels deep (the limit){note}", line, path)
        if self.values > MAX_VALUES:
            reason = f"more than {MAX_VALUES:,} values with aliases expanded (the limit){note}"
            raise _LimitPassed(reason, line, path)
        if isinstance(event, CollectionStartEvent):
            mapping = isinstance(event, MappingStartEvent)
            self.open.append(_Open(event.anchor, path, mapping, line, level, self.values - 1, level))
            return
        if isinstance(event, ScalarEvent) and event.anchor is not None:
            self.anchors[event.anchor] = (1, 0, line)
        if parent:
            parent.items += 1
            parent.deepest = max(parent.deepest, level)

    def _end(self) -> None:
        ended = self.open.pop()
        if ended.anchor is not None:
            levels = ended.deepest - ended.level + 1
            self.anchors[ended.anchor] = (self.values - ended.values_before, levels, ended.line)
        if self.open:
            self.open[-1].items += 1
            self.open[-1].deepest = max(self.open[-1].deepest, ended.deepest)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _describe(error: Exception) -> str:
    """PyYAML's own wording without its source excerpt (our problems already carry file and line)."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    return ", ".join(part for part in parts if part) or str(error)


class _Builder:
    """Turns one file's node tree into Python values, recording origins and collecting problems."""

    def __init__(self, file: Path, environ: Mapping[str, str]):
        self.file, self.environ = file, environ
        self.origins: dict[KeyPath, Origin] = {}
        self.problems: list[ConfigProblem] = []
        self._constructor = SafeConstructor()
        self._checked: set[int] = set()  # mappings already checked and flattened
        self._skipped: set[int] = set()  # key nodes already reported as duplicate or invalid
        self._active: set[int] = set()  # collections being built, to stop recursive aliases

    def problem(self, path: KeyPath, node: Node, reason: str) -> None:
        self.problems.append(ConfigProblem(self.file, path, reason, _line(node)))

    def build(self, node: Node, path: KeyPath) -> object:
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            return self.problem(path, node, f"unsupported YAML tag {node.tag}")
        if id(node) in self._active:
            return self.problem(path, node, "an alias refers to its own enclosing value")
        self._active.add(id(node))
        try:
            return self._mapping(node, path) if isinstance(node, MappingNode) else self._sequence(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict:
        # flatten_mapping rewrites the node in place, and an alias can bring us back to it: check once.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._find_duplicates(node, path)
            try:
                self._constructor.flatten_mapping(node)
            except yaml.YAMLError as error:
                self.problem(path, node, f"invalid merge key: {error.problem}")
        result = {}
        for key_node, value_node in node.value:
            if id(key_node) in self._skipped or key_node.tag == _MERGE_TAG:
                continue
            if (key := self._key(key_node, path)) is not None:
                self.origins[path + (key,)] = (self.file, _line(key_node))
                result[key] = self.build(value_node, path + (key,))
        return result

    def _find_duplicates(self, node: MappingNode, path: KeyPath) -> None:
        first_lines: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if (key := self._key(key_node, path)) is None:
                self._skipped.add(id(key_node))
            elif key in first_lines:
                self._skipped.add(id(key_node))
                reason = f"duplicate key '{key}' (first defined on line {first_lines[key]})"
                self.problem(path + (key,), key_node, reason)
            else:
                first_lines[key] = _line(key_node)

    def _key(self, node: Node, path: KeyPath) -> object:
        """The key's value, or None after reporting a problem (a null key is refused too)."""
        if not isinstance(node, ScalarNode):
            return self.problem(path, node, "mapping keys must be single values")
        try:
            key = self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            return self.problem(path, node, f"invalid key: {_describe(error)}")
        return key if key is not None else self.problem(path, node, "mapping keys must not be null")

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list:
        items = []
        for index, item in enumerate(node.value):
            self.origins[path + (index,)] = (self.file, _line(item))
            items.append(self.build(item, path + (index,)))
        return items

    def _scalar(self, node: ScalarNode, path: KeyPath) -> object:
        text = _REFERENCE.sub(lambda match: self._substitute(match, node, path), node.value)
        tag = node.tag
        if node.style is None and not getattr(node, "explicit_tag", False):
            tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
        try:
            substituted = ScalarNode(tag, text, node.start_mark, node.end_mark, node.style)
            return self._constructor.construct_object(substituted)
        except (yaml.YAMLError, ValueError) as error:  # ValueError: e.g. `!!int abc`
            self.problem(path, node, f"invalid value: {_describe(error)}")
            return text

    def _substitute(self, match: re.Match[str], node: ScalarNode, path: KeyPath) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group("name"), match.group("default")
        if name is None:
            reason = "malformed ${...} reference: use ${VAR} or ${VAR:-default}, or $${ for a literal ${"
            self.problem(path, node, reason)
            return match.group(0)
        value = self.environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            self.problem(path, node, f"environment variable {name} is not set and has no default")
            return match.group(0)
        return value
