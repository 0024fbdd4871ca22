"""Loads one environment's configuration: YAML files in, a validated `Environment` out.

    load_environment("development")
      1. reads config/environments/development.yaml and the files it extends (yaml_reader:
         safe_load, duplicate keys, ${VAR} and ${VAR:-default}, deep merge of `extends`);
      2. checks the merged document's shape against ENVIRONMENT_SCHEMA (types, unknown keys,
         durations, weights in (0, 1]);
      3. checks what a schema cannot say: every source named is defined, min <= max, each value
         type known (built-in or fully defined), each fallback valid under its own rules, each
         field precision one of decimals or significant digits, within bounds;
      4. returns the desired database state: built-in value types overlaid by `dynamic_values`,
         sources from `sources:`, and the deployment settings (cache TTLs, mock mode, ...).
Every problem is collected and raised at once as a ConfigError naming file, key path and reason.
"""

from __future__ import annotations

import copy
from functools import lru_cache
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.validators import URLValidator
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator, FormatChecker

from core.durations import format_duration, parse_duration
from core.errors import ConfigError, ConfigProblem, KeyPath
from config.yaml_reader import ReadResult, read_environment
from values.builtins import BUILTIN_VALUE_TYPES, DEFAULT_PERFORMANCE_TTL, DEFAULT_TTL
from core.validation import MAX_READ_BUDGET, ValueRules, precision_problems, rules_problems, value_problems

TIERS = ("primary", "secondary", "tertiary")
SOURCE_KINDS = ("http_json", "world_bank", "imf", "google_ads", "facebook_marketing", "semrush")
IDENTIFIER = "^[a-z][a-z0-9_]*$"
TTL_NAMES = ("default", "performance")  # the cache's default_ttl and performance_ttl

# Used where neither the file nor a built-in says otherwise.
DEFAULT_RATE_LIMIT = {"requests_per_minute": 60, "burst_allowance": 10}
DEFAULT_BREAKER = {"failure_threshold": 5, "recovery_timeout": "PT1M", "half_open_trials": 1}
DEFAULT_TIMEOUT = {"connect": 3.0, "read": 10.0}

_format_checker = FormatChecker()


@_format_checker.checks("duration", raises=ValueError)
def _is_duration(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return True  # a wrong type is the `type` keyword's to report, once
    return parse_duration(value) is not None


@_format_checker.checks("ttl", raises=ValueError)
def _is_ttl(value: object) -> bool:
    if value in TTL_NAMES:
        return True
    try:
        return _is_duration(value)
    except ValueError as error:
        raise ValueError(f"{error}, or one of {', '.join(TTL_NAMES)}") from None


# JSON Schema's bounds let NaN through (every comparison with it is false), and YAML writes it `.nan`.
@_format_checker.checks("finite", raises=ValueError)
def _is_finite(value: object) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return True


@_format_checker.checks("http-url", raises=ValidationError)
def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return True  # a wrong type is the `type` keyword's to report, once
    URLValidator(schemes=["http", "https"], message=f"{value!r} is not an http(s) URL")(value)
    return True


def _positive(kind: str = "number") -> dict:
    return {"type": kind, "exclusiveMinimum": 0, "format": "finite"}


DURATION = {"type": ["string", "integer"], "format": "duration"}
STRING_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
BOUNDS = {
    "type": "object",
    "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
    "additionalProperties": False,
    "minProperties": 1,
}
# Field pattern -> one precision; how many digits each allows is core.validation's to say
# (precision_problems, checked with the value type).
PRECISION = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {"decimals": {"type": "integer"}, "significant": {"type": "integer"}},
        "additionalProperties": False,
    },
}
RATE_LIMIT = {
    "type": "object",
    "properties": {
        "requests_per_minute": {"type": "integer", "minimum": 1},
        "burst_allowance": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
SOURCE = {
    "type": "object",
    "required": ["kind", "base_url"],
    "properties": {
        "kind": {"enum": list(SOURCE_KINDS)},
        "description": {"type": "string"},
        "base_url": {"type": "string", "format": "http-url"},
        "credentials": {
            "type": "object",
            "additionalProperties": {
                "type": "string",
                "pattern": "^[A-Z_][A-Z0-9_]*$",
                "x-message": "must name an environment variable (UPPER_CASE), never hold the secret",
            },
        },
        "enabled": {"type": "boolean"},
        "timeout": {
            "type": "object",
            "properties": {"connect": _positive(), "read": _positive()},
            "additionalProperties": False,
        },
        "rate_limit": RATE_LIMIT,
        "breaker": {
            "type": "object",
            "properties": {
                "failure_threshold": {"type": "integer", "minimum": 1},
                "recovery_timeout": DURATION,
                "half_open_trials": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
        "request": {"type": "object"},
        "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
SOURCE_LINK = {
    "type": "object",
    "required": ["api", "weight"],
    "properties": {
        "api": {"type": "string"},
        "weight": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "format": "finite",
            "x-message": "weight must be a number in (0, 1]",
        },
        "tier": {"enum": list(TIERS)},
        "channels": STRING_LIST,
        "params": {"type": "object"},
        "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
VALIDATION = {
    "type": "object",
    "properties": {
        **{
            name: {"type": ["number", "null"], "exclusiveMinimum": 0}  # null: no ratio bound
            for name in (
                "min_ratio",
                "max_ratio",
                "min_threshold_ratio",  # the seed's name for min_ratio
                "max_threshold_ratio",  # the seed's name for max_ratio
            )
        },
        "min_multiplier": {"type": "number"},  # the seed's bound on every field
        "max_multiplier": {"type": "number"},
        "fields": {"type": "object", "additionalProperties": BOUNDS},
        "ascending": STRING_LIST,
    },
    "additionalProperties": False,
}
VALUE_TYPE = {
    "type": "object",
    "properties": {
        "aliases": {
            **STRING_LIST,
            "items": {
                "type": "string",
                "pattern": IDENTIFIER,
                "x-message": "an alias uses lowercase letters, digits and underscores",
            },
        },
        "description": {"type": "string"},
        "schema": {"type": "object"},
        "context_keys": STRING_LIST,
        "update_frequency": DURATION,
        "ttl": {"type": ["string", "integer"], "format": "ttl"},
        "max_staleness": DURATION,
        "fallback": {},
        "read_budget": DURATION,
        "widening": STRING_LIST,
        "prediction": {"type": "boolean"},
        "sources": {"type": "array", "items": SOURCE_LINK},
        "validation": VALIDATION,
        "precision": PRECISION,
        "blend": {
            "type": "object",
            "properties": {
                "method": {"enum": ["mean", "median"]},
                "quorum": {"type": "number", "minimum": 0, "format": "finite"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
ENVIRONMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "environment": {"type": "string"},
        "cache": {
            "type": "object",
            "properties": {
                "provider": {"enum": ["memory", "redis"]},
                "redis_url": {"type": "string"},
                "default_ttl": DURATION,
                "performance_ttl": DURATION,
            },
            "additionalProperties": False,
        },
        "api_integration": {
            "type": "object",
            "properties": {
                "rate_limits": RATE_LIMIT,
                "mock_mode": {"type": "boolean"},
                "response_delay": {"type": "integer", "minimum": 0, "x-message": "milliseconds"},
            },
            # Any other key is a group of sources by tier (the seed's market_intelligence, ...).
            "additionalProperties": {
                "type": "object",
                "properties": {tier: {"type": "string"} for tier in TIERS},
                "additionalProperties": False,
            },
        },
        "sources": {
            "type": "object",
            "propertyNames": {"pattern": IDENTIFIER},
            "additionalProperties": SOURCE,
        },
        "dynamic_values": {
            "type": "object",
            "propertyNames": {"pattern": IDENTIFIER},
            "additionalProperties": VALUE_TYPE,
        },
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class SourceSpec:
    """A source as the database should hold it: `fields` are `sources.Source` field values."""

    name: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class LinkSpec:
    """A value type's source: `fields` are `sources.ValueTypeSource` field values."""

    source: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class ValueTypeSpec:
    """A value type as the database should hold it: `fields` are `values.ValueType` field values."""

    key: str
    fields: dict[str, Any]
    links: tuple[LinkSpec, ...]


@dataclass(frozen=True)
class Environment:
    name: str
    files: tuple[Path, ...]
    mock_mode: bool
    response_delay: timedelta
    default_ttl: timedelta
    performance_ttl: timedelta
    source_groups: dict[str, dict[str, str]]
    sources: dict[str, SourceSpec]
    value_types: dict[str, ValueTypeSpec]


@lru_cache(maxsize=1)
def active_environment() -> Environment:
    """The running deployment's environment (DYNCONFIG_ENV), read once per process."""
    return load_environment()


def is_mock_mode() -> bool:
    """Whether this deployment's sources are local simulators (development's `mock_mode`); set
    as values.registry's `is_mock_mode` by config's AppConfig.ready()."""
    try:
        return active_environment().mock_mode
    except ConfigError:
        return False  # `manage.py check` reports the file; reads go on without mock mode


def environment_path(name: str, config_dir: Path | None = None) -> Path:
    return Path(config_dir or settings.DYNCONFIG_CONFIG_DIR) / f"{name}.yaml"


def load_environment(
    name: str | None = None,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Environment:
    """The validated configuration of environment `name` (default: DYNCONFIG_ENV), or of `path`."""
    if path is None:
        path = environment_path(name or settings.DYNCONFIG_ENV)
    result = read_environment(Path(path), os.environ if environ is None else environ)
    return _Builder(result).build()


class _Builder:
    def __init__(self, result: ReadResult):
        self.result = result
        self.data = result.data
        self.problems: list[ConfigProblem] = []

    def problem(self, path: KeyPath, reason: str) -> None:
        file, line = self.result.locate(path)
        self.problems.append(ConfigProblem(file, path, reason, line))

    def build(self) -> Environment:
        self._check_shape()
        if self.problems:
            # Deeper checks would repeat these problems in other words.
            raise ConfigError(self.problems)
        cache = self.data.get("cache") or {}
        api = self.data.get("api_integration") or {}
        default_ttl = parse_duration(cache.get("default_ttl", int(DEFAULT_TTL.total_seconds())))
        performance_ttl = parse_duration(
            cache.get("performance_ttl", int(DEFAULT_PERFORMANCE_TTL.total_seconds()))
        )
        rate_limit = {**DEFAULT_RATE_LIMIT, **(api.get("rate_limits") or {})}
        groups = {name: group for name, group in api.items() if isinstance(group, dict) and name != "rate_limits"}
        sources = {
            name: self._source(name, definition, rate_limit)
            for name, definition in (self.data.get("sources") or {}).items()
        }
        for group_name, group in groups.items():
            for tier, source in group.items():
                if source not in sources:
                    self.problem(("api_integration", group_name, tier), self._unknown_source(source, sources))
        value_types = self._value_types(sources, default_ttl, performance_ttl)
        if self.problems:
            raise ConfigError(self.problems)
        return Environment(
            name=self.data.get("environment") or self.result.name,
            files=self.result.files,
            mock_mode=bool(api.get("mock_mode", False)),
            response_delay=timedelta(milliseconds=api.get("response_delay", 0)),
            default_ttl=default_ttl,
            performance_ttl=performance_ttl,
            source_groups=groups,
            sources=sources,
            value_types=value_types,
        )

    def _check_shape(self) -> None:
        validator = Draft202012Validator(ENVIRONMENT_SCHEMA, format_checker=_format_checker)
        for error in validator.iter_errors(self.data):
            path = tuple(error.absolute_path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set(error.schema.get("properties", {}))
                for key in sorted(set(error.instance) - known):
                    self.problem((*path, key), "unknown key")
            elif error.validator == "format":
                self.problem(path, str(error.cause or error.message))
            elif "propertyNames" in error.schema_path:  # the error is the name's own (pattern), on its mapping
                reason = f"{error.instance!r} is not a valid name: use lowercase letters, digits and underscores"
                self.problem((*path, error.instance), reason)
            else:
                custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
                reason = f"{custom}, not {error.instance!r}" if custom else error.message
                if error.validator == "type":
                    reason = f"wrong type: {error.message}"
                self.problem(path, reason)

    def _source(self, name: str, definition: dict, rate_limit: dict) -> SourceSpec:
        timeout = {**DEFAULT_TIMEOUT, **definition.get("timeout", {})}
        limit = {**rate_limit, **definition.get("rate_limit", {})}
        breaker = {**DEFAULT_BREAKER, **definition.get("breaker", {})}
        return SourceSpec(
            name=name,
            fields={
                "kind": definition["kind"],
                "description": definition.get("description", ""),
                "base_url": definition["base_url"],
                "credential_variables": dict(definition.get("credentials", {})),
                "is_enabled": definition.get("enabled", True),
                "connect_timeout": float(timeout["connect"]),
                "read_timeout": float(timeout["read"]),
                "requests_per_minute": limit["requests_per_minute"],
                "burst_allowance": limit["burst_allowance"],
                "breaker_failure_threshold": breaker["failure_threshold"],
                "breaker_recovery_timeout": parse_duration(breaker["recovery_timeout"]),
                "breaker_half_open_trials": breaker["half_open_trials"],
                "request_template": definition.get("request", {}),
                "field_mapping": dict(definition.get("mapping", {})),
            },
        )

    def _value_types(
        self, sources: dict[str, SourceSpec], default_ttl: timedelta, performance_ttl: timedelta
    ) -> dict[str, ValueTypeSpec]:
        names = {key: key for key in BUILTIN_VALUE_TYPES}
        for key, builtin in BUILTIN_VALUE_TYPES.items():
            names.update({alias: key for alias in builtin["aliases"]})
        entries: dict[str, tuple[str, dict]] = {}
        for written, entry in (self.data.get("dynamic_values") or {}).items():
            key = names.get(written, written)
            if key in entries:
                self.problem(("dynamic_values", written), f"defines {key} a second time (also as {entries[key][0]})")
                continue
            entries[key] = (written, entry)
        specs = {}
        for key in [*BUILTIN_VALUE_TYPES, *(k for k in entries if k not in BUILTIN_VALUE_TYPES)]:
            written, entry = entries.get(key, (key, {}))
            spec = self._value_type(key, written, entry, sources, default_ttl, performance_ttl)
            if spec is not None:
                specs[key] = spec
        self._check_aliases(specs, entries)
        return specs

    def _value_type(self, key, written, entry, sources, default_ttl, performance_ttl) -> ValueTypeSpec | None:
        at = ("dynamic_values", written)
        definition = copy.deepcopy(BUILTIN_VALUE_TYPES.get(key, {}))
        validation = {**definition.pop("validation", {})}
        definition.update({name: value for name, value in entry.items() if name != "validation"})
        validation.update(self._canonical_validation(entry.get("validation", {}), (*at, "validation")))
        missing = [name for name in ("schema", "fallback", "update_frequency") if name not in definition]
        if missing:
            self.problem(at, f"{key} is not a built-in value type, so it needs {', '.join(missing)}")
            return None
        ttl = definition.get("ttl", "default")
        ttl = {"default": default_ttl, "performance": performance_ttl}.get(ttl) or parse_duration(ttl)
        fields = {
            "aliases": list(definition.get("aliases", [])),
            "description": definition.get("description", ""),
            "schema": definition["schema"],
            "context_keys": list(definition.get("context_keys", [])),
            "update_frequency": parse_duration(definition["update_frequency"]),
            "ttl": ttl,
            "max_staleness": parse_duration(definition.get("max_staleness", "P7D")),
            "fallback_value": definition["fallback"],
            "field_bounds": validation.get("fields", {}),
            "ascending_fields": list(validation.get("ascending", [])),
            "min_ratio": validation.get("min_ratio"),
            "max_ratio": validation.get("max_ratio"),
            "quorum": float(definition.get("blend", {}).get("quorum", 0.0)),
            "blend_method": definition.get("blend", {}).get("method", "mean"),
            "read_budget": parse_duration(definition["read_budget"]) if "read_budget" in definition else None,
            # Least significant first: by default the context keys, last declared first.
            "widening_order": list(definition.get("widening", reversed(definition.get("context_keys", [])))),
            "is_prediction_enabled": definition.get("prediction", True),
            # The file's precision replaces the built-in's whole: `precision: {}` rounds nothing.
            "field_precision": definition.get("precision", {}),
        }
        for where, problem in precision_problems(fields["field_precision"]):
            self.problem((*at, "precision", *where), problem)
        if fields["read_budget"] is not None and fields["read_budget"] > MAX_READ_BUDGET:
            self.problem((*at, "read_budget"), f"at most {format_duration(MAX_READ_BUDGET)}: a longer wait is a refresh's")
        unknown = [name for name in fields["widening_order"] if name not in fields["context_keys"]]
        if unknown or len(set(fields["widening_order"])) != len(fields["widening_order"]):
            self.problem((*at, "widening"), f"names each context key ({', '.join(fields['context_keys']) or 'none'}) at most once")
        rules = ValueRules(
            schema=fields["schema"],
            field_bounds=fields["field_bounds"],
            ascending_fields=fields["ascending_fields"],
            min_ratio=fields["min_ratio"],
            max_ratio=fields["max_ratio"],
        )
        rule_problems = rules_problems(rules)
        for name, problems in rule_problems.items():
            where = {"schema": (*at, "schema"), "field_bounds": (*at, "validation", "fields")}.get(name, (*at, "validation", name))
            for problem in problems:
                self.problem(where, problem)
        if not rule_problems:
            for problem in value_problems(fields["fallback_value"], rules):
                self.problem((*at, "fallback"), f"fallback breaks its own rules: {problem}")
        links = []
        seen: set[str] = set()
        for index, link in enumerate(entry.get("sources", [])):
            where = (*at, "sources", index, "api")
            if link["api"] not in sources:
                self.problem(where, self._unknown_source(link["api"], sources))
            elif link["api"] in seen:
                self.problem(where, f"names source {link['api']} twice")
            seen.add(link["api"])
            links.append(
                LinkSpec(
                    source=link["api"],
                    fields={
                        "tier": link.get("tier", "primary"),
                        "weight": float(link["weight"]),
                        "channels": list(link.get("channels", [])),
                        "request_params": link.get("params", {}),
                        "field_mapping": dict(link.get("mapping", {})),
                    },
                )
            )
        return ValueTypeSpec(key=key, fields=fields, links=tuple(links))

    def _canonical_validation(self, validation: dict, at: KeyPath) -> dict:
        """The seed's names (min_threshold_ratio, min_multiplier, ...) in canonical form."""
        canonical: dict[str, Any] = {}
        for seed_name, name in (("min_threshold_ratio", "min_ratio"), ("max_threshold_ratio", "max_ratio")):
            if seed_name in validation and name in validation:
                self.problem((*at, seed_name), f"says the same as {name}: give one of them")
            if seed_name in validation:
                canonical[name] = validation[seed_name]
        for name in ("min_ratio", "max_ratio", "ascending", "fields"):
            if name in validation:
                canonical[name] = validation[name]
        multiplier = {
            bound: validation[f"{bound}_multiplier"]
            for bound in ("min", "max")
            if f"{bound}_multiplier" in validation
        }
        if multiplier:
            canonical["fields"] = {**canonical.get("fields", {}), "*": multiplier}
        return canonical

    def _check_aliases(self, specs: dict[str, ValueTypeSpec], entries: dict[str, tuple[str, dict]]) -> None:
        owner: dict[str, str] = {key: key for key in specs}
        for key, spec in specs.items():
            at = ("dynamic_values", entries.get(key, (key, {}))[0], "aliases")
            for alias in spec.fields["aliases"]:
                if alias == key:
                    self.problem(at, f"{alias} is the value type's own key")
                elif alias in owner and owner[alias] != key:
                    self.problem(at, f"{alias} already names {owner[alias]}")
                owner.setdefault(alias, key)

    @staticmethod
    def _unknown_source(name: str, sources: Mapping[str, Any]) -> str:
        defined = ", ".join(sorted(sources)) or "none"
        return f"names no defined source {name!r} (defined under sources: {defined})"
