"""The admin's editors: a form for each JSON value an operator edits, and ISO 8601 durations.

A value type's JSON Schema says what its values look like; `value_editor` turns it, with the
type's field bounds and the value at hand, into the schema django-jsonform draws as a form: a
labelled number input per industry (a map's current keys become named inputs, and a new one can
be added), a low and a high input per `[low, high]` range, a group per channel, each number with
its bounds beside it. Lists of keys get a list of text inputs. Every editor keeps the raw JSON
under an "Advanced: edit as JSON" fold, and saving from either works.

The editor only draws: the model's `clean()` decides what is valid, on the server, and
`StructuredErrorsFormMixin` puts each of its problems ("retail: 5.0 is above the maximum 3.0")
beside the input of the number it names as well as in the field's error list.

Where the editor's shape differs from the stored value's (a range is edited as {low, high} and
stored as [low, high]; a blank optional input is left out), an `EditorNode` maps between them.
Both ways accept either shape, so a post of the stored JSON (the advanced view, an API-minded
script) reads the same as the editor's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django_jsonform.utils import join_coords
from django_jsonform.widgets import JSONFormWidget

from core.durations import format_duration, parse_duration
from core.errors import KeyPath, format_path
from core.validation import bounds_at

# The raw JSON of the advanced view is posted under the field's name with this suffix, and the
# JSON it showed under the second: it replaces the editor's value only when it was edited.
RAW_SUFFIX = "__json"
RAW_SHOWN_SUFFIX = "__json_shown"

# Words shown in capitals in a label made from a key: "ctr_range" -> "CTR range".
ACRONYMS = {"ctr": "CTR", "cpc": "CPC", "ttl": "TTL", "url": "URL", "id": "ID", "api": "API", "iso": "ISO"}
# Keywords of a value type's schema the derived editor understands; any other one (oneOf, $ref,
# ...) leaves the value to the JSON text area.
_UNDERSTOOD_KEYWORDS = {
    "$schema", "type", "title", "description", "default", "properties", "additionalProperties",
    "required", "items", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "format", "enum",
}  # fmt: skip
# A key a new map entry may get: matched by the "*" of a field-bounds pattern, never by a name.
_NEW_KEY = "\x00new"


def human_label(key: str) -> str:
    """`conversion_rate_range` -> "Conversion rate range", `ctr_range` -> "CTR range"."""
    words = [ACRONYMS.get(word, word) for word in str(key).replace("-", "_").split("_") if word]
    if not words:
        return str(key)
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def bounds_text(low: float | None, high: float | None) -> str:
    """"Allowed: 0.3 to 3.0", "At least 0", "At most 1,000", or "" when unbounded."""
    if low is not None and high is not None:
        return f"Allowed: {_number_text(low)} to {_number_text(high)}"
    if low is not None:
        return f"At least {_number_text(low)}"
    if high is not None:
        return f"At most {_number_text(high)}"
    return ""


def _number_text(number: float) -> str:
    return f"{number:,}" if isinstance(number, int) else str(number)


# --- between the stored value and the editor's ----------------------------------------------


class EditorNode:
    """A part of a value whose editor shape is the stored shape."""

    def to_editor(self, value: Any) -> Any:
        return value

    def from_editor(self, value: Any) -> Any:
        return value

    def coordinates(self, path: KeyPath) -> list[str | int]:
        """Where the number at `path` of the stored value is in the editor's data."""
        return list(path)


@dataclass(frozen=True)
class ObjectNode(EditorNode):
    """An object: each property by its own node, other keys by `extra`'s; blank optional
    inputs (None, "") left out when `drops_blank`."""

    children: Mapping[str, EditorNode] = field(default_factory=dict)
    extra: EditorNode = field(default_factory=EditorNode)
    drops_blank: bool = False

    def child(self, key: Any) -> EditorNode:
        return self.children.get(key, self.extra)

    def to_editor(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: self.child(key).to_editor(item) for key, item in value.items()}

    def from_editor(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            key: self.child(key).from_editor(item)
            for key, item in value.items()
            if not (self.drops_blank and item in (None, ""))
        }

    def coordinates(self, path: KeyPath) -> list[str | int]:
        if not path:
            return []
        return [path[0], *self.child(path[0]).coordinates(path[1:])]


@dataclass(frozen=True)
class ArrayNode(EditorNode):
    item: EditorNode = field(default_factory=EditorNode)

    def to_editor(self, value: Any) -> Any:
        return [self.item.to_editor(each) for each in value] if isinstance(value, list) else value

    def from_editor(self, value: Any) -> Any:
        return [self.item.from_editor(each) for each in value] if isinstance(value, list) else value

    def coordinates(self, path: KeyPath) -> list[str | int]:
        if not path:
            return []
        return [path[0], *self.item.coordinates(path[1:])]


RANGE_ENDS = ("low", "high")


class RangeNode(EditorNode):
    """A `[low, high]` pair, edited as two labelled inputs: {"low": ..., "high": ...}."""

    def to_editor(self, value: Any) -> Any:
        if isinstance(value, list) and len(value) == 2:
            return dict(zip(RANGE_ENDS, value))
        return value

    def from_editor(self, value: Any) -> Any:
        if isinstance(value, dict) and value and set(value) <= set(RANGE_ENDS):
            return [value.get(end) for end in RANGE_ENDS]
        return value

    def coordinates(self, path: KeyPath) -> list[str | int]:
        if path and path[0] in (0, 1):
            return [RANGE_ENDS[path[0]]]
        return list(path)


@dataclass(frozen=True)
class Editor:
    """The form django-jsonform draws for one JSON field (`schema`) and the way between the
    stored value and the editor's data (`node`)."""

    schema: dict[str, Any]
    node: EditorNode = field(default_factory=EditorNode)

    def error_map(self, value: Any, problems: list[str]) -> dict[str, list[str]]:
        """The model's problems with `value` by the editor input they name (django-jsonform's
        error map): "retail: 5.0 is above the maximum 3.0" goes beside the retail input. A
        problem that names no part of the value stays only in the field's error list."""
        by_text = {format_path(path): path for path in _paths(value) if path}
        longest_first = sorted(by_text, key=len, reverse=True)
        errors: dict[str, list[str]] = {}
        for problem in problems:
            for text in longest_first:
                if problem.startswith(f"{text}: "):
                    message = problem[len(text) + 2 :]
                elif problem.startswith(f"{text} ("):  # "medium_threshold (5000) must be above ..."
                    message = problem
                else:
                    continue
                errors.setdefault(join_coords(*self.node.coordinates(by_text[text])), []).append(message)
                break
        return errors


def _paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


# --- editors derived from a value type ------------------------------------------------------


def value_editor(schema: Any, field_bounds: Mapping[str, Any], value: Any) -> Editor | None:
    """The editor of a value of a type with this schema and these field bounds, or None when
    the schema says something the editor cannot draw (the value is then edited as JSON).

    A map (an object given by `additionalProperties`) shows the keys `value` has now, each
    labelled, and lets the operator add one."""
    if not isinstance(schema, dict) or schema.get("type") not in ("object", "array"):
        return None
    bounds = field_bounds if isinstance(field_bounds, Mapping) else {}
    try:
        editor_schema, node = _derive(schema, (), bounds, value)
    except _NotDrawable:
        return None
    return Editor(schema=editor_schema, node=node)


class _NotDrawable(Exception):
    """A schema keyword or shape the editor does not draw."""


def _derive(
    schema: Any, path: KeyPath, bounds: Mapping[str, Any], value: Any
) -> tuple[dict[str, Any], EditorNode]:
    if not isinstance(schema, dict) or set(schema) - _UNDERSTOOD_KEYWORDS:
        raise _NotDrawable
    kind = schema.get("type")
    described = {"help_text": schema["description"]} if isinstance(schema.get("description"), str) else {}
    if kind == "object":
        return _derive_object(schema, path, bounds, value, described)
    if kind == "array":
        return _derive_array(schema, path, bounds, value, described)
    if kind in ("number", "integer"):
        return _number_schema(schema, path, bounds), EditorNode()
    if kind in ("string", "boolean"):
        drawn = {key: schema[key] for key in ("type", "enum", "minLength", "maxLength", "pattern") if key in schema}
        return {**drawn, **described}, EditorNode()
    raise _NotDrawable


def _derive_object(schema, path, bounds, value, described) -> tuple[dict[str, Any], EditorNode]:
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {} if not properties else False)
    if not isinstance(properties, dict) or not isinstance(extra, (dict, bool)):
        raise _NotDrawable
    if extra is True or extra == {}:
        raise _NotDrawable  # any JSON at all under any key: only the text area can say that
    current = value if isinstance(value, dict) else {}
    # A map's keys in alphabetical order (the database keeps no order): industries, channels.
    keys = [*properties, *sorted(key for key in current if key not in properties and isinstance(extra, dict))]
    drawn: dict[str, Any] = {}
    children: dict[str, EditorNode] = {}
    for key in keys:
        sub_schema = properties.get(key, extra)
        sub_drawn, children[key] = _derive(sub_schema, (*path, key), bounds, current.get(key))
        drawn[key] = {"title": human_label(key), **sub_drawn}
    editor_schema: dict[str, Any] = {"type": "object", "properties": drawn, **described}
    node_extra = EditorNode()
    if isinstance(extra, dict):
        extra_drawn, node_extra = _derive(extra, (*path, _NEW_KEY), bounds, None)
        editor_schema["additionalProperties"] = extra_drawn
    if isinstance(schema.get("required"), list):
        editor_schema["required"] = [key for key in schema["required"] if key in drawn]
    return editor_schema, ObjectNode(children=children, extra=node_extra)


def _derive_array(schema, path, bounds, value, described) -> tuple[dict[str, Any], EditorNode]:
    items = schema.get("items")
    if not isinstance(items, dict):
        raise _NotDrawable
    is_pair = schema.get("minItems") == schema.get("maxItems") == 2
    if is_pair and items.get("type") in ("number", "integer"):
        ends = {
            end: {"title": end.capitalize(), **_number_schema(items, (*path, index), bounds)}
            for index, end in enumerate(RANGE_ENDS)
        }
        # Its description ("[low, high]") says what the two labelled inputs already show.
        return {"type": "object", "properties": ends, "required": list(RANGE_ENDS)}, RangeNode()
    first = value[0] if isinstance(value, list) and value else None
    item_drawn, item_node = _derive(items, (*path, 0), bounds, first)
    drawn = {"type": "array", "items": item_drawn, **described}
    for keyword in ("minItems", "maxItems"):
        if keyword in schema:
            drawn[keyword] = schema[keyword]
    return drawn, ArrayNode(item=item_node)


def _number_schema(schema: Mapping[str, Any], path: KeyPath, bounds: Mapping[str, Any]) -> dict[str, Any]:
    low, high = bounds_at(path, bounds)
    if isinstance(schema.get("minimum"), (int, float)) and (low is None or schema["minimum"] > low):
        low = schema["minimum"]
    if isinstance(schema.get("maximum"), (int, float)) and (high is None or schema["maximum"] < high):
        high = schema["maximum"]
    drawn: dict[str, Any] = {"type": schema["type"]}
    if low is not None and math.isfinite(low):
        drawn["minimum"] = low
    if high is not None and math.isfinite(high):
        drawn["maximum"] = high
    help_parts = [
        part for part in (bounds_text(low, high), schema.get("description")) if isinstance(part, str) and part
    ]
    if help_parts:
        drawn["help_text"] = ". ".join(help_parts)
    return drawn


# --- editors of the other JSON fields -------------------------------------------------------


def string_list_editor(item_title: str, help_text: str = "") -> Editor:
    """A list of names (aliases, context keys, channels): one text input each, added and removed."""
    schema: dict[str, Any] = {"type": "array", "items": {"type": "string", "title": item_title}}
    if help_text:
        schema["help_text"] = help_text
    return Editor(schema=schema, node=ArrayNode())


def string_map_editor(help_text: str = "") -> Editor:
    """A map of names to text (a credential role to its variable's name, a field to its
    JMESPath): one input per key, labelled with the key; keys may be added and removed."""
    schema: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
    if help_text:
        schema["help_text"] = help_text
    return Editor(schema=schema, node=ObjectNode())


def field_bounds_editor(value: Any) -> Editor:
    """Per field pattern ("*", "*.ctr_range"), a lowest and a highest number, either optional."""
    one = {
        "type": "object",
        "properties": {
            "min": {"type": "number", "title": "Lowest"},
            "max": {"type": "number", "title": "Highest"},
        },
    }
    keys = sorted(value) if isinstance(value, dict) else []
    schema = {
        "type": "object",
        "properties": {key: {**one, "title": f"Fields matching {key}"} for key in keys},
        "additionalProperties": one,
        "help_text": 'A field pattern is dotted names or wildcards: "*" is every top-level field, '
        '"*.ctr_range" the ctr_range of each.',
    }
    bounds_node = ObjectNode(drops_blank=True)
    return Editor(schema=schema, node=ObjectNode(children={key: bounds_node for key in keys}, extra=bounds_node))


def context_editor(context_keys: list[str]) -> Editor:
    """An override's context: one optional input per context key of its value type."""
    schema = {
        "type": "object",
        "properties": {key: {"type": "string", "title": human_label(key)} for key in context_keys},
        "help_text": "Leave a key empty to match every value of it; all empty matches every context.",
    }
    return Editor(schema=schema, node=ObjectNode(drops_blank=True))


# --- the form field and its widget ----------------------------------------------------------


class StructuredJSONWidget(JSONFormWidget):
    """django-jsonform's editor, and below it the same value as JSON in an "Advanced" fold.

    A value that is not JSON (a bad edit of the advanced text) is shown as text alone, to be
    fixed there: the editor cannot draw it."""

    advanced_template_name = "admin/widgets/structured_json.html"

    def __init__(self, editor: Editor, attrs: dict[str, Any] | None = None):
        super().__init__(schema=editor.schema, attrs=attrs)
        self.editor = editor

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer=None) -> str:
        context = {"id": (attrs or {}).get("id") or f"id_{name}", "raw_shown_name": name + RAW_SHOWN_SUFFIX}
        try:
            stored = self.editor.node.from_editor(json.loads(value))
        except (TypeError, ValueError):  # not JSON: the text alone, posted under the field's name
            context.update(editor="", raw=value, raw_name=name)
        else:
            context.update(
                editor=super().render(name, value, attrs, renderer),
                raw=json.dumps(stored, ensure_ascii=False, indent=2),
                raw_name=name + RAW_SUFFIX,
            )
        return mark_safe(render_to_string(self.advanced_template_name, context))

    @property
    def media(self) -> forms.Media:
        return super().media + forms.Media(css={"all": ["values/structured_json.css"]})

    def value_from_datadict(self, data, files, name: str) -> Any:
        raw = data.get(name + RAW_SUFFIX)
        if raw is not None and not _same_json(raw, data.get(name + RAW_SHOWN_SUFFIX)):
            return raw
        return data.get(name)


def _same_json(text: str, other: str | None) -> bool:
    if other is None:
        return False
    try:
        return json.loads(text) == json.loads(other)
    except ValueError:
        return text.strip() == other.strip()


class StructuredJSONField(forms.JSONField):
    """A JSON field edited through an `Editor`; its value is always the stored shape."""

    def __init__(self, *, editor: Editor, **kwargs: Any):
        kwargs["widget"] = StructuredJSONWidget(editor)  # whatever widget the admin would give
        super().__init__(**kwargs)
        self.editor = editor

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(self.editor.node.to_editor(value), ensure_ascii=False, cls=self.encoder)

    def to_python(self, value: Any) -> Any:
        return self.editor.node.from_editor(super().to_python(value))

    def bound_data(self, data: Any, initial: Any) -> Any:
        bound = super().bound_data(data, initial)
        if isinstance(bound, forms.fields.InvalidJSONInput):
            return bound
        return self.editor.node.from_editor(bound)

    def has_changed(self, initial: Any, data: Any) -> bool:
        # By value, not by JSON text: the browser's editor posts 3.0 as 3.
        if self.disabled:
            return False
        try:
            return self.to_python(data) != initial
        except ValidationError:
            return True


def editor_field_classes(editors: Mapping[str, Editor | None]) -> dict[str, Any]:
    """`field_classes` for a model form: each named JSON field edited through its editor."""
    return {
        name: _EditorFieldClass(editor)
        for name, editor in editors.items()
        if editor is not None
    }


@dataclass(frozen=True)
class _EditorFieldClass:
    """What Django's model field calls as the form field's class, with the editor bound."""

    editor: Editor

    def __call__(self, **kwargs: Any) -> StructuredJSONField:
        return StructuredJSONField(editor=self.editor, **kwargs)


def keep_stored_numbers(value: Any, stored: Any) -> Any:
    """`value`, with each number equal to the stored one at its place kept as stored: a browser
    posts every whole float as an int (3.0 as 3), which would rewrite numbers nobody edited."""
    if isinstance(value, dict) and isinstance(stored, dict):
        return {key: keep_stored_numbers(item, stored.get(key)) for key, item in value.items()}
    if isinstance(value, list) and isinstance(stored, list) and len(value) == len(stored):
        return [keep_stored_numbers(item, before) for item, before in zip(value, stored)]
    if _is_number(value) and _is_number(stored) and value == stored:
        return stored
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class StructuredErrorsFormMixin:
    """For a form with structured fields: numbers left as they were keep their stored form, and
    after validation each field's problems also go beside the inputs they name."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name, form_field in self.fields.items():
            if isinstance(form_field, StructuredJSONField) and name in cleaned:
                cleaned[name] = keep_stored_numbers(cleaned[name], self.get_initial_for_field(form_field, name))
        return cleaned

    def full_clean(self) -> None:
        super().full_clean()
        for name, form_field in self.fields.items():
            if not isinstance(form_field, StructuredJSONField) or name not in self.errors:
                continue
            try:
                posted = form_field.widget.value_from_datadict(self.data, self.files, self.add_prefix(name))
                value = form_field.to_python(posted)
            except ValidationError:
                continue  # not JSON: the field's own error says so
            error_map = form_field.editor.error_map(value, list(self.errors[name]))
            if error_map:
                form_field.widget.add_error(error_map)


# --- durations ------------------------------------------------------------------------------


class ISODurationField(forms.DurationField):
    """A duration entered and shown as ISO 8601, as the YAML writes it: PT15M, PT6H, P1D.

    A whole number is read as seconds (as the YAML reads it). Anything else is refused with
    what was wrong and an example."""

    widget = forms.TextInput
    default_error_messages = {"invalid": "%(problem)s."}

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("widget", forms.TextInput(attrs={"placeholder": "e.g. PT15M or P1D", "size": 14}))
        help_text = kwargs.get("help_text") or ""
        kwargs["help_text"] = f"{help_text} ISO 8601: PT15M is 15 minutes, PT6H 6 hours, P1D a day.".strip()
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, timedelta):
            return format_duration(value)
        return value

    def to_python(self, value: Any) -> timedelta | None:
        if value in self.empty_values:
            return None
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        try:
            return parse_duration(int(text) if text.isdigit() else text)
        except ValueError as error:
            problem = str(error)  # "bad duration '15 minutes': expected ISO 8601 such as PT6H or P1D"
            raise ValidationError(
                self.error_messages["invalid"], code="invalid", params={"problem": problem[:1].upper() + problem[1:]}
            ) from None
