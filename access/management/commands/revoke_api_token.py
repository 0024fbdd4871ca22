from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from access.management.commands.create_api_token import command_actor
from access.models import ApiToken
from access.services import api_token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by name. It stops working within DYNCONFIG_TOKEN_CACHE_SECONDS everywhere."

    def add_arguments(self, parser):
        parser.add_argument("name", metavar="NAME", help="The token's name.")
        parser.add_argument("--reason", required=True, help="Why: saved in the history.")

    def handle(self, *args, name, reason, **options):
        token = ApiToken.objects.filter(name=name).first()
        if token is None:
            raise CommandError(f"No token named {name!r}.")
        try:
            api_token_revoke(token=token, actor=command_actor(), reason=reason, channel="command")
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(
            f"Revoked token {token.name!r} ({token.prefix}…). It stops working within "
            f"{settings.DYNCONFIG_TOKEN_CACHE_SECONDS:g} s in every process."
        )
