from pathlib import Path

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.environment import load_environment
from core.errors import ConfigError
from config.services import config_export

HEADER = "# Exported by `manage.py export_config`: the database's sources and value types.\n"


class Command(BaseCommand):
    help = "Write the database's sources and value types as environment YAML that sync_config takes back."

    def add_arguments(self, parser):
        parser.add_argument(
            "--env", help=f"Environment whose deployment settings to include (default: {settings.DYNCONFIG_ENV})."
        )
        parser.add_argument("--output", "-o", type=Path, help="File to write (default: standard output).")

    def handle(self, *args, env=None, output=None, **options):
        try:
            environment = load_environment(env)
        except ConfigError as error:
            raise CommandError(str(error)) from error
        text = HEADER + yaml.safe_dump(config_export(environment=environment), sort_keys=False, allow_unicode=True)
        if output:
            output.write_text(text)
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
