"""The scale section of bench/run.py (`--scale`): the same figures at 1× and at 100× the data,
side by side, each with the growth it may show.

1× is a hundredth of the target set: the three built-in value types (as `sync_config --env test`
made them), 500 contexts, 2 overrides. 100× is the target: 300 value types (the built-ins and
297 copies of them, each linked to its model's sources), 50,000 contexts, 200 overrides. Each
context is a region (`region=r00042`; every built-in takes one) of one type, round robin, with
an L3 row (a fresh value: the type's fallback, as a fetch would have stored it), HISTORY rows of
history each and a ContextReads row (read lately, so that the dispatcher ranks it). Rows are
written with bulk_create in batches; 100× is 1× grown, not rebuilt.

At each scale (warm-up untimed; medians):
  - get_value as an L1, L2 and L3 hit, over SAMPLE contexts spread over the types (L2: L1
    cleared before each read; L3: L1 cleared and the key deleted from Redis before each read);
  - the registry's reload after an operator change (the version bumped, then a reload);
  - the refresh dispatcher's run: every type's round due (the worst tick: every candidate
    leased), and a tick right after it with nothing due;
  - `export_config` and `sync_config --dry-run` of the exported file (in this process);
  - the admin changelists (first page, a superuser through Django's test client): queries per
    page and the time of a page;
  - a /metrics scrape (this process's metrics hold one series set per value type read);
  - last, a web process's L1 filled: every context read at 1×, DYNCONFIG_L1_MAX_ENTRIES × 1.2
    at 100×; entries kept, evictions, and this process's RSS growth per entry.

The section deletes what it made at its start and end: every resolved value, history row and
ContextReads row of the bench database (TRUNCATE), the copies (keys `scale_*`) and the bench's
overrides, and flushes the bench's Redis database. bench/run.py refuses a database whose name
lacks "bench".
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

BASE_TYPES, BASE_CONTEXTS, BASE_OVERRIDES = 3, 500, 2
FACTOR = 100
HISTORY = 3  # history rows per context
BATCH = 5_000  # rows per INSERT
SAMPLE = 300  # contexts read per hit series (spread over the types)
COPY_PREFIX = "scale_"
BENCH_AUTHOR = "bench-scale"
ADMIN_USER = "bench-scale-admin"
# Growth allowed before a figure is called worse than expected: "constant" may move this much
# (the machine's noise, a bigger index), "≤ linear" may reach FACTOR times this.
CONSTANT_SLACK = 1.5
LINEAR_SLACK = 1.2
# L1 is filled past its bound by this share at 100×, to show the eviction.
OVERFILL = 1.2


@dataclass(frozen=True)
class Scale:
    types: int
    contexts: int
    overrides: int

    @property
    def label(self) -> str:
        return f"{self.types} types, {self.contexts:,} contexts, {self.overrides} overrides"


@dataclass
class Figure:
    """One row of the table: a figure at both scales and the growth it may show."""

    label: str
    unit: str
    expectation: str  # constant | ≤ linear | bounded | equal | shown (no target)
    small: float = 0.0
    large: float = 0.0
    note: str = ""
    is_ok: bool | None = None  # set by the expectations that are not a ratio (bounded, equal)


def measure_scale(*, quick: bool = False) -> dict:
    """Build 1×, measure, grow to 100×, measure; clean up. The figures, for render_scale."""
    from django.conf import settings

    scales = (
        Scale(BASE_TYPES, BASE_CONTEXTS, BASE_OVERRIDES),
        Scale(BASE_TYPES * FACTOR, BASE_CONTEXTS * FACTOR, BASE_OVERRIDES * FACTOR),
    )
    repeats = 3 if quick else 5
    results: list[dict] = []
    clean()
    try:
        for scale in scales:
            started = time.monotonic()
            build(scale)
            built_seconds = time.monotonic() - started
            print(f"bench: scale {scale.label}: built in {built_seconds:.0f} s; measuring...", flush=True)
            results.append(measure_at(scale, repeats=repeats) | {"built_seconds": built_seconds})
    finally:
        clean()
    return {"scales": scales, "results": results, "l1_bound": settings.DYNCONFIG_L1_MAX_ENTRIES}


# Building ---------------------------------------------------------------------------------------


def clean() -> None:
    """Delete what the section made (see the module docstring) and flush the bench's Redis db."""
    import redis
    from django.conf import settings
    from django.db import connection

    from audit.history import bump_config_version
    from values.cache import l1
    from values.models import ContextReads, Override, RefreshSchedule, ResolvedValue, ValueRecord, ValueType
    from values.registry import registry

    tables = ", ".join(model._meta.db_table for model in (ValueRecord, ResolvedValue, ContextReads))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")
    Override.objects.filter(author=BENCH_AUTHOR).delete()
    RefreshSchedule.objects.filter(value_type__key__startswith=COPY_PREFIX).delete()
    ValueType.objects.filter(key__startswith=COPY_PREFIX).delete()
    RefreshSchedule.objects.update(last_dispatched_at=None)
    bump_config_version()
    registry.refresh(force=True)
    l1.clear()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def build(scale: Scale) -> None:
    """Grow the database to `scale` (types, then contexts with their rows, then overrides)."""
    from django.utils import timezone

    from audit.history import bump_config_version
    from values.models import ContextReads, Override, ResolvedValue, ValueRecord, ValueType, ValueTypeSource
    from values.registry import registry

    builtins = list(ValueType.objects.exclude(key__startswith=COPY_PREFIX).order_by("key"))
    copies = ValueType.objects.filter(key__startswith=COPY_PREFIX).count()
    wanted = scale.types - len(builtins) - copies
    if wanted > 0:
        links = {model.pk: list(model.source_links.all()) for model in builtins}
        made = []
        for index in range(copies, copies + wanted):
            model = builtins[index % len(builtins)]
            made.append(_copy(model, f"{COPY_PREFIX}{index:04d}_{model.key}"))
        made = ValueType.objects.bulk_create(made, batch_size=BATCH)
        ValueTypeSource.objects.bulk_create(
            [
                ValueTypeSource(
                    value_type=value_type, source_id=link.source_id, tier=link.tier, weight=link.weight,
                    channels=link.channels, request_params=link.request_params, field_mapping=link.field_mapping,
                )  # fmt: skip
                for value_type, model_index in zip(made, range(copies, copies + wanted))
                for link in links[builtins[model_index % len(builtins)].pk]
            ],
            batch_size=BATCH,
        )
        bump_config_version()
    snapshot = registry.refresh(force=True)
    types = list(ValueType.objects.order_by("pk"))
    now = timezone.now()

    have = ResolvedValue.objects.count()
    for first in range(have, scale.contexts, BATCH):
        resolved, history, reads = [], [], []
        for index in range(first, min(first + BATCH, scale.contexts)):
            value_type = types[index % len(types)]
            config = snapshot.value_type(value_type.key)
            context = {"region": f"r{index:05d}"}
            context_key = f"region=r{index:05d}"
            fetched_at = now - timedelta(minutes=index % 50)
            resolved.append(
                ResolvedValue(
                    value_type=value_type, context_key=context_key, context=context, value=value_type.fallback_value,
                    provenance=_provenance(fetched_at), fingerprint=config.fingerprint, fetched_at=fetched_at,
                    expires_at=now + timedelta(days=1),
                )  # fmt: skip
            )
            history += [
                ValueRecord(
                    value_type=value_type, context_key=context_key, context=context, value=value_type.fallback_value,
                    provenance=_provenance(fetched_at - timedelta(hours=age)), fetched_at=fetched_at - timedelta(hours=age),
                )  # fmt: skip
                for age in range(HISTORY)
            ]
            reads.append(
                ContextReads(
                    value_type=value_type, context_key=context_key, context=context, reads=1 + index % 97,
                    last_read_at=now - timedelta(minutes=index % 600),
                )  # fmt: skip
            )
        ResolvedValue.objects.bulk_create(resolved)
        ValueRecord.objects.bulk_create(history)
        ContextReads.objects.bulk_create(reads)

    have = Override.objects.filter(author=BENCH_AUTHOR).count()
    if scale.overrides > have:
        Override.objects.bulk_create(
            [
                Override(
                    value_type=types[index % len(types)], context_match={"region": f"r{index:05d}"},
                    value=types[index % len(types)].fallback_value, reason="bench scale", author=BENCH_AUTHOR,
                )  # fmt: skip
                for index in range(have, scale.overrides)
            ]
        )
        bump_config_version()
    registry.refresh(force=True)


def _copy(model, key: str):
    from values.models import ValueType

    fields = {
        field.name: getattr(model, field.name)
        for field in ValueType._meta.concrete_fields
        if field.name not in ("id", "key", "aliases", "created_at", "updated_at", "version")
    }
    return ValueType(key=key, aliases=[], **fields)


def _provenance(fetched_at) -> dict:
    return {
        "tier": "primary", "origin": "primary", "sources": [], "confidence": 1.0,
        "fetched_at": fetched_at.isoformat(), "expires_at": None, "stale": False,
    }  # fmt: skip


# Measuring --------------------------------------------------------------------------------------


def measure_at(scale: Scale, *, repeats: int) -> dict:
    figures: dict[str, float] = {}
    figures |= measure_reads(scale)
    figures |= measure_registry(repeats)
    figures |= measure_dispatcher(repeats)
    figures |= measure_commands(repeats)
    figures |= measure_admin(repeats)
    figures |= measure_metrics(repeats)
    figures |= measure_l1_memory(scale)
    return figures


def _sample(scale: Scale) -> list[tuple[str, dict, str]]:
    """SAMPLE contexts spread over the types, none under an override: (type key, context, cache key)."""
    from values.cache import cache_key
    from values.models import ResolvedValue
    from values.registry import registry

    snapshot = registry.snapshot()
    step = max(1, scale.contexts // SAMPLE)
    rows = ResolvedValue.objects.filter(
        context_key__in=[f"region=r{index:05d}" for index in range(scale.overrides, scale.contexts, step)][:SAMPLE]
    ).values_list("value_type__key", "context", "context_key")
    return [(key, context, cache_key(snapshot.value_type(key), context_key)) for key, context, context_key in rows]


def _median_us(call: Callable[[], object], n: int, prepare: Callable[[], None] | None = None) -> tuple[float, list]:
    clock = time.perf_counter_ns
    samples, results = [], []
    gc.collect()
    for _ in range(n):
        if prepare is not None:
            prepare()
        start = clock()
        results.append(call())
        samples.append(clock() - start)
    return statistics.median(samples) / 1000, results


def measure_reads(scale: Scale) -> dict[str, float]:
    """L1, L2 and L3 hits over the sample, each read timed alone; and how many were not
    served from the intended tier."""
    import redis
    from django.conf import settings

    from values.cache import l1
    from values.resolution import get_value

    raw = redis.Redis.from_url(settings.REDIS_URL)
    sample = _sample(scale)
    figures: dict[str, float] = {}
    for tier in ("l3", "l2", "l1"):
        position = iter(range(10**9))
        current: list = [None]

        def prepare(tier=tier):
            current[0] = sample[next(position) % len(sample)]
            if tier in ("l2", "l3"):
                l1.clear()
            if tier == "l3":
                raw.delete(current[0][2])

        def read():
            key, context, _ = current[0]
            return get_value(key, context)

        for _ in range(len(sample)):  # warm: every sampled pair once through this tier
            prepare()
            read()
        median, answers = _median_us(read, len(sample) * (10 if tier == "l1" else 3), prepare)
        figures[f"{tier}_us"] = median
        figures[f"{tier}_wrong_tier"] = sum(answer.provenance.tier != tier for answer in answers)
    return figures


def measure_registry(repeats: int) -> dict[str, float]:
    """An operator change (the version bumped), then this process's reload of its snapshot."""
    from audit.history import bump_config_version
    from values.registry import registry

    seconds = []
    for _ in range(repeats):
        bump_config_version()
        started = time.perf_counter()
        registry.refresh(force=True)
        seconds.append(time.perf_counter() - started)
    return {"registry_ms": statistics.median(seconds) * 1000}


def measure_dispatcher(repeats: int) -> dict[str, float]:
    """The dispatcher's run with every round due (leases and rounds reset before each, untimed),
    and a run right after one, when nothing is due."""
    from values.models import ContextReads, RefreshSchedule
    from values.refresh import refresh_dispatch

    def enqueue(key: str, context: dict) -> None:  # the broker's part is not measured
        return None

    busy, quiet, queued = [], [], 0
    for _ in range(repeats):
        ContextReads.objects.update(queued_until=None, next_refresh_at=None, failures=0)
        RefreshSchedule.objects.update(last_dispatched_at=None)
        started = time.perf_counter()
        queued = len(refresh_dispatch(enqueue=enqueue))
        busy.append(time.perf_counter() - started)
        started = time.perf_counter()
        refresh_dispatch(enqueue=enqueue)
        quiet.append(time.perf_counter() - started)
    return {
        "dispatch_busy_ms": statistics.median(busy) * 1000,
        "dispatch_quiet_ms": statistics.median(quiet) * 1000,
        "dispatch_queued": queued,
    }


def measure_commands(repeats: int) -> dict[str, float]:
    """export_config to a file, then sync_config --dry-run of that file (which changes nothing)."""
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    export, sync, refusal = [], [], ""
    with tempfile.TemporaryDirectory(prefix="dynconfig-bench-") as directory:
        path = Path(directory) / "exported.yaml"
        for _ in range(repeats):
            started = time.perf_counter()
            call_command("export_config", "--env", "test", "-o", str(path), stderr=io.StringIO())
            export.append(time.perf_counter() - started)
            output = io.StringIO()
            started = time.perf_counter()
            try:
                call_command("sync_config", "--file", str(path), "--dry-run", stdout=output)
            except CommandError as error:  # shown in the table: the export cannot be taken back
                refusal = " ".join(str(error).split())[:300]
            sync.append(time.perf_counter() - started)
        size = path.stat().st_size
    return {
        "export_ms": statistics.median(export) * 1000,
        "sync_dry_run_ms": statistics.median(sync) * 1000,
        "export_kb": size / 1024,
        "sync_says_no_changes": float("No changes" in output.getvalue()),
        "sync_refusal": refusal,
    }


ADMIN_PAGES = (
    ("values", "valuetype", "value types"),
    ("values", "override", "overrides"),
    ("values", "resolvedvalue", "resolved values (L3)"),
    ("values", "valuerecord", "value history"),
    ("values", "contextreads", "context reads"),
    ("sources", "source", "sources"),
    ("audit", "auditentry", "audit entries"),
)


def measure_admin(repeats: int) -> dict[str, float]:
    """Each changelist's first page: its queries, and the median time of `repeats` GETs."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    figures: dict[str, float] = {}
    for app, model, _ in ADMIN_PAGES:
        url = reverse(f"admin:{app}_{model}_changelist")
        response = client.get(url)  # warm: the session, content types
        if response.status_code != 200:
            raise SystemExit(f"bench: {url} answered {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        # Counted now: the context reads the connection's log lazily, and each request clears it.
        figures[f"admin_{model}_queries"] = len(queries)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(url)
            seconds.append(time.perf_counter() - started)
        figures[f"admin_{model}_ms"] = statistics.median(seconds) * 1000
    return figures


def measure_metrics(repeats: int) -> dict[str, float]:
    """/metrics, scraped in this process, after one read of every type (each has its series)."""
    from values.models import ResolvedValue
    from values.resolution import get_value
    from monitoring.metrics import exposition

    seen: set[str] = set()
    for key, context in ResolvedValue.objects.order_by("pk").values_list("value_type__key", "context"):
        if key not in seen:
            seen.add(key)
            get_value(key, context)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        body, _ = exposition(None)
        seconds.append(time.perf_counter() - started)
    lines = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    return {"metrics_ms": statistics.median(seconds) * 1000, "metrics_samples": len(lines)}


def measure_l1_memory(scale: Scale) -> dict[str, float]:
    """This process's L1 filled by reads of distinct contexts (from L3, then kept in L2 and L1):
    its entries, its evictions, and the process's RSS growth per entry kept."""
    from django.conf import settings

    from values.cache import l1
    from values.models import ResolvedValue
    from values.resolution import get_value

    bound = settings.DYNCONFIG_L1_MAX_ENTRIES
    reads = min(scale.contexts, int(bound * OVERFILL))
    pairs = list(
        ResolvedValue.objects.order_by("pk").values_list("value_type__key", "context")[:reads]
    )
    l1.clear()
    gc.collect()
    evictions_before, rss_before = l1.evictions, _rss_bytes()
    for key, context in pairs:
        get_value(key, context)
    gc.collect()
    rss_after = _rss_bytes()
    entries = len(l1)
    return {
        "l1_reads": len(pairs),
        "l1_entries": entries,
        "l1_evictions": l1.evictions - evictions_before,
        "l1_rss_mb": (rss_after - rss_before) / 2**20,
        "l1_bytes_per_entry": (rss_after - rss_before) / max(entries, 1),
    }


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# Report -----------------------------------------------------------------------------------------


def render_scale(scale: dict, verdict: Callable[[str, bool], str]) -> list[str]:
    small, large = scale["results"]
    low, high = scale["scales"]
    bound = scale["l1_bound"]
    rows: list[Figure] = [
        Figure("get_value L1 hit", "µs", "constant", small["l1_us"], large["l1_us"]),
        Figure("get_value L2 hit", "µs", "constant", small["l2_us"], large["l2_us"]),
        Figure("get_value L3 hit", "µs", "constant", small["l3_us"], large["l3_us"]),
        Figure("registry reload after a change", "ms", "≤ linear", small["registry_ms"], large["registry_ms"]),
        Figure(
            "dispatcher run, every round due", "ms", "≤ linear", small["dispatch_busy_ms"], large["dispatch_busy_ms"],
            note=f"queued {small['dispatch_queued']:,.0f} | {large['dispatch_queued']:,.0f}",
        ),
        Figure("dispatcher run, nothing due", "ms", "≤ linear", small["dispatch_quiet_ms"], large["dispatch_quiet_ms"]),
        Figure(
            "export_config", "ms", "≤ linear", small["export_ms"], large["export_ms"],
            note=f"{small['export_kb']:,.0f} KB | {large['export_kb']:,.0f} KB",
        ),
        Figure(
            "sync_config --dry-run (the export)", "ms", "≤ linear", small["sync_dry_run_ms"], large["sync_dry_run_ms"],
            note=_sync_note(small, large),
            is_ok=bool(small["sync_says_no_changes"] and large["sync_says_no_changes"]),
        ),
        Figure(
            "/metrics scrape", "ms", "≤ linear", small["metrics_ms"], large["metrics_ms"],
            note=f"{small['metrics_samples']:,.0f} | {large['metrics_samples']:,.0f} samples",
        ),
    ]
    for _, model, label in ADMIN_PAGES:
        queries_small, queries_large = small[f"admin_{model}_queries"], large[f"admin_{model}_queries"]
        rows.append(
            Figure(f"admin {label}: queries per page", "", "equal", queries_small, queries_large,
                   is_ok=queries_small == queries_large)  # fmt: skip
        )
        rows.append(Figure(f"admin {label}: page", "ms", "≤ linear", small[f"admin_{model}_ms"], large[f"admin_{model}_ms"]))
    rows += [
        Figure(
            "L1 entries after reading distinct contexts", "", "bounded", small["l1_entries"], large["l1_entries"],
            note=f"{small['l1_reads']:,.0f} | {large['l1_reads']:,.0f} reads; bound {bound:,}; evicted "
            f"{small['l1_evictions']:,.0f} | {large['l1_evictions']:,.0f}",
            # Full at the bound at 100× (its reads pass it), nothing evicted at 1× (they do not).
            is_ok=large["l1_entries"] == bound and large["l1_evictions"] > 0 and small["l1_evictions"] == 0,
        ),
        Figure(
            "process RSS growth while filling it", "MB", "shown", small["l1_rss_mb"], large["l1_rss_mb"],
            note=f"{large['l1_bytes_per_entry'] / 1024:,.1f} KB per entry kept at 100× (at 1× the allocator reuses "
            f"freed memory: not a per-entry figure); a full L1 of {bound:,} such entries: "
            f"{bound * large['l1_bytes_per_entry'] / 2**20:,.0f} MB",
        ),
    ]
    lines = [
        f"scale: 1× = {low.label}; 100× = {high.label}; {HISTORY} history rows and a context-reads row per context "
        f"(built in {small['built_seconds']:.0f} s and {large['built_seconds']:.0f} s)",
        f"{'figure':<44}{'1×':>12}{'100×':>12}{'ratio':>9}   expectation",
    ]
    for figure in rows:
        lines.append(_row(figure, verdict))
        if figure.note:
            lines.append(f"    {figure.note}")
    wrong = {tier: large[f"{tier}_wrong_tier"] + small[f"{tier}_wrong_tier"] for tier in ("l1", "l2", "l3")}
    if any(wrong.values()):
        lines.append("    ! reads not served from the intended tier: " + ", ".join(f"{t} {n:.0f}" for t, n in wrong.items()))
    lines.append(
        f"    (constant: ratio ≤ {CONSTANT_SLACK:g}; ≤ linear: ratio ≤ {FACTOR * LINEAR_SLACK:g}, {FACTOR}× the data "
        "with some slack; bounded: L1 stays within DYNCONFIG_L1_MAX_ENTRIES, the rest evicted)"
    )
    return lines


def _sync_note(small: dict, large: dict) -> str:
    """Whether sync_config took the export back as it should ("No changes"), at each scale."""
    said = []
    for name, figures in (("1×", small), ("100×", large)):
        if figures["sync_refusal"]:
            said.append(f"{name}: REFUSED: {figures['sync_refusal']}")
        else:
            said.append(f"{name}: {'No changes' if figures['sync_says_no_changes'] else 'CHANGES (a round trip should make none)'}")
    return "; ".join(said)


def _row(figure: Figure, verdict: Callable[[str, bool], str]) -> str:
    ratio = figure.large / figure.small if figure.small else float("inf") if figure.large else 1.0
    if figure.expectation == "constant":
        ok = ratio <= CONSTANT_SLACK
    elif figure.expectation == "≤ linear":
        ok = ratio <= FACTOR * LINEAR_SLACK and figure.is_ok is not False
    elif figure.expectation == "shown":
        ok = None
    else:
        ok = bool(figure.is_ok)
    unit = f" ({figure.unit})" if figure.unit else ""
    digits = 0 if max(figure.small, figure.large) >= 100 else 1
    return (
        f"{figure.label + unit:<44}{figure.small:>12,.{digits}f}{figure.large:>12,.{digits}f}{ratio:>9.2f}   "
        f"{figure.expectation}" + (f"  {verdict('scale: ' + figure.label, ok)}" if ok is not None else "")
    )
