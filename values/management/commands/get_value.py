import json

from django.core.management.base import BaseCommand, CommandError

from core.context import ContextError
from values.resolution import UnknownValueType, get_value


class Command(BaseCommand):
    help = "Resolve a value as consumers get it, and show where it came from."

    def add_arguments(self, parser):
        parser.add_argument("key", help="Value type key or alias, e.g. budget_thresholds.")
        parser.add_argument(
            "--context", action="append", default=[], metavar="K=V",
            help="A context entry, repeatable: --context region=us --context channels=a,b",
        )
        parser.add_argument("--no-cache", action="store_true", help="Skip the caches: fetch from sources now.")
        parser.add_argument("--json", action="store_true", help="Print the whole answer as JSON.")

    def handle(self, *args, key, context, no_cache, **options):
        pairs = {}
        for item in context:
            name, separator, value = item.partition("=")
            if not separator or not name.strip():
                raise CommandError(f"--context takes K=V, not {item!r}")
            name = name.strip()
            # A repeated key adds to it: `--context channels=a --context channels=b` is both.
            pairs[name] = f"{pairs[name]},{value}" if name in pairs else value
        try:
            answer = get_value(key, pairs, use_cache=not no_cache)
        except (UnknownValueType, ContextError) as error:
            raise CommandError(str(error)) from error
        if options["json"]:
            self.stdout.write(_dumps(answer.as_dict()))
            return
        provenance = answer.provenance
        self.stdout.write(_dumps(answer.value))
        sources = ", ".join(f"{use.name} ({use.weight})" for use in provenance.sources) or "none"
        self.stdout.write(
            f"tier: {provenance.tier} (made by {provenance.origin})  confidence: {provenance.confidence:.2f}"
            f"  stale: {provenance.stale}\nsources: {sources}\n"
            f"fetched at: {provenance.fetched_at}  expires at: {provenance.expires_at}"
        )
        for error in provenance.errors:
            self.stdout.write(f"note: {error}")


def _dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
