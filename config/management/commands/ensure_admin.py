import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin user if there is none. The password comes from DYNCONFIG_ADMIN_PASSWORD, "
        "or is generated and printed once."
    )

    def handle(self, *args, **options):
        username = os.environ.get("DYNCONFIG_ADMIN_USER", "admin")
        users = get_user_model().objects
        if users.filter(username=username).exists():
            self.stdout.write(f"Admin user {username!r} exists (password unchanged).")
            return
        password = os.environ.get("DYNCONFIG_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        if generated:
            # Printed this once only: it is stored hashed and cannot be shown again.
            self.stdout.write(f"Created admin user {username!r} with password: {password}")
        else:
            self.stdout.write(f"Created admin user {username!r} (password from DYNCONFIG_ADMIN_PASSWORD).")
