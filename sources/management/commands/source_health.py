import json

from django.core.management.base import BaseCommand, CommandError

from sources.breaker import BreakerState, breaker_state
from sources.models import Source
from sources.ratelimit import bucket_size


class Command(BaseCommand):
    help = (
        "Show each source's health: kind, enabled, credential variables (set or unset, never "
        "their values), circuit breaker and rate limit."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="Sources to show (default: all).")
        parser.add_argument("--json", action="store_true", help="Print a JSON list instead of text.")

    def handle(self, *args, names, **options):
        sources = list(Source.objects.all() if not names else Source.objects.filter(name__in=names))
        unknown = sorted(set(names) - {source.name for source in sources})
        if unknown:
            raise CommandError(f"no source named {', '.join(unknown)}")
        states = [breaker_state(source.name) for source in sources]
        reports = [_report(source, state) for source, state in zip(sources, states)]
        if options["json"]:
            self.stdout.write(json.dumps(reports, indent=2, sort_keys=True))
            return
        for source, state, report in zip(sources, states, reports):
            credentials = ", ".join(
                f"{name} {'set' if is_set else 'unset'}" for name, is_set in report["credentials"].items()
            )
            limit = report["rate_limit"]
            self.stdout.write(
                f"{source.name} ({source.kind}, {'enabled' if source.is_enabled else 'disabled'})\n"
                f"  credentials: {credentials or 'none needed'}\n"
                f"  breaker: {state.summary()}\n"
                f"  rate limit: {limit['requests_per_minute']}/min, burst {limit['burst']}"
            )


def _report(source: Source, state: BreakerState) -> dict:
    capacity, _ = bucket_size(source)
    return {
        "name": source.name,
        "kind": source.kind,
        "is_enabled": source.is_enabled,
        "credentials": dict(sorted(source.credential_status().items())),
        "breaker": state.as_dict(),
        "rate_limit": {"requests_per_minute": source.requests_per_minute, "burst": capacity},
    }
