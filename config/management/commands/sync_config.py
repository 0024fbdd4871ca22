from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.environment import load_environment
from core.errors import ConfigError
from config.services import SyncRefused, config_sync


class Command(BaseCommand):
    help = "Make the database hold an environment's sources and value types (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("--env", help=f"Environment name (default: DYNCONFIG_ENV, now {settings.DYNCONFIG_ENV}).")
        parser.add_argument("--file", type=Path, help="An environment file to read instead of --env.")
        parser.add_argument("--dry-run", action="store_true", help="Print the changes; write nothing.")

    def handle(self, *args, env=None, file=None, dry_run=False, **options):
        if env and file:
            raise CommandError("Give --env or --file, not both.")
        try:
            environment = load_environment(env, path=file)
            report = config_sync(environment=environment, dry_run=dry_run)
        except (ConfigError, SyncRefused) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(report.render())
