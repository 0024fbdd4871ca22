from django.apps import AppConfig


class ConfigConfig(AppConfig):
    verbose_name = "Environment configuration"
    name = "config"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the environment file check)
