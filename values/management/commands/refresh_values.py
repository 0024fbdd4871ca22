"""`manage.py refresh_values [KEY ...] [--context K=V ...] [--all-contexts]`

Refreshes now, in this process (not through Celery): every value type without KEY; the empty
context, or the one given, or with --all-contexts every context consumers were recorded
reading (and the empty one). Progress goes to stderr, the closing table to stdout; the exit
status is 1 if any refresh failed. Each refresh is values.refresh.value_refresh, the service the
background tasks call, so a success here also ends a context's backoff.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from values.models import ContextReads, ValueType
from values.refresh import FAILED, REFRESHED, UNCHANGED, RefreshOutcome, value_refresh
from values.registry import registry

# Width of the text progress bar, in characters.
PROGRESS_BAR_WIDTH = 30
# Longest reason shown in the table (the whole one is in the log and on the ContextReads row).
REASON_WIDTH = 160


class Command(BaseCommand):
    help = "Refresh values from their sources now, and report what was refreshed, unchanged or failed."

    def add_arguments(self, parser):
        parser.add_argument("keys", nargs="*", metavar="KEY", help="Value type keys or aliases (default: all).")
        parser.add_argument(
            "--context", action="append", default=[], metavar="K=V",
            help="A context entry, repeatable: --context region=us --context channels=a,b",
        )
        parser.add_argument(
            "--all-contexts", action="store_true",
            help="Every context consumers were recorded reading, and the empty context.",
        )

    def handle(self, *args, keys, context, all_contexts, **options):
        if context and all_contexts:
            raise CommandError("give --context or --all-contexts, not both")
        pairs = self._pairs(self._keys(keys), _parse_context(context), all_contexts)
        outcomes: list[RefreshOutcome] = []
        for index, (key, pair_context) in enumerate(pairs, start=1):
            self._progress(index - 1, len(pairs), f"{key} {_describe(pair_context)}")
            outcomes.append(value_refresh(key=key, context=pair_context))
        self._progress(len(pairs), len(pairs), "done", final=True)
        self._table(outcomes)
        failed = sum(outcome.status == FAILED for outcome in outcomes)
        if failed:
            raise CommandError(f"{failed} of {len(outcomes)} refreshes failed", returncode=1)

    def _keys(self, given: list[str]) -> list[str]:
        if not given:
            return list(ValueType.objects.order_by("key").values_list("key", flat=True))
        snapshot = registry.snapshot()
        keys = []
        for name in given:
            value_type = snapshot.value_type(name)
            if value_type is None:
                raise CommandError(f"unknown value type {name!r}")
            if value_type.key not in keys:
                keys.append(value_type.key)
        return keys

    @staticmethod
    def _pairs(keys: list[str], context: dict[str, str], all_contexts: bool) -> list[tuple[str, dict[str, Any]]]:
        if not all_contexts:
            return [(key, context) for key in keys]
        recorded: dict[str, list[dict]] = {}
        for key, recorded_context in (
            ContextReads.objects.filter(value_type__key__in=keys)
            .exclude(context_key="")
            .order_by("-reads", "context_key")
            .values_list("value_type__key", "context")
        ):
            recorded.setdefault(key, []).append(recorded_context)
        return [(key, pair) for key in keys for pair in [{}, *recorded.get(key, [])]]

    def _progress(self, done: int, total: int, label: str, *, final: bool = False) -> None:
        filled = PROGRESS_BAR_WIDTH * done // total if total else PROGRESS_BAR_WIDTH
        line = f"[{'#' * filled}{'.' * (PROGRESS_BAR_WIDTH - filled)}] {done}/{total} {label}"
        plain = str  # progress is not an error: not in the error style (red) of stderr
        if self.stderr.isatty():
            self.stderr.write(f"\r{line}\033[K", style_func=plain, ending="\n" if final else "")
            self.stderr.flush()
        else:  # a log, not a terminal: one line per step
            self.stderr.write(line, style_func=plain)

    def _table(self, outcomes: list[RefreshOutcome]) -> None:
        header = ("key", "context", "status", "tier", "reason")
        rows = [
            (o.key, _describe(o.context), o.status, o.tier or "-", _shorten(o.reason, REASON_WIDTH)) for o in outcomes
        ]
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
        for row in [header, *rows]:
            self.stdout.write("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip())
        counts = {status: sum(o.status == status for o in outcomes) for status in (REFRESHED, UNCHANGED, FAILED)}
        self.stdout.write(", ".join(f"{count} {status}" for status, count in counts.items()))


def _parse_context(items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise CommandError(f"--context takes K=V, not {item!r}")
        name = name.strip()
        # A repeated key adds to it: `--context channels=a --context channels=b` is both.
        pairs[name] = f"{pairs[name]},{value}" if name in pairs else value
    return pairs


def _describe(context: dict[str, Any]) -> str:
    if not context:
        return "{}"
    return ",".join(
        f"{name}={'+'.join(value) if isinstance(value, list) else value}" for name, value in sorted(context.items())
    )


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
