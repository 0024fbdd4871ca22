import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from access.models import Scope
from access.services import api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for one consumer. The token is printed once, alone on stdout "
        "(TOKEN=$(manage.py create_api_token ...) keeps just it); only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", metavar="NAME", help="The consumer the token is for (unique).")
        parser.add_argument(
            "--scope",
            dest="scopes",
            action="append",
            default=[],
            metavar="SCOPE",
            help=f"A scope to grant, repeatable: {', '.join(Scope.values)}.",
        )

    def handle(self, *args, name, scopes, **options):
        try:
            token, secret = api_token_create(name=name, scopes=scopes, actor=command_actor(), channel="command")
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stderr.write(f"Created token {token.name!r} ({token.prefix}…) with scopes {', '.join(token.scopes)}.")
        self.stdout.write(secret)
        self.stderr.write("This token is shown only once: store it now. Only its hash is kept.")


def command_actor() -> str:
    """Who ran a management command, for the history."""
    try:
        return f"command:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in the environment nor in the password database
        return "command"
