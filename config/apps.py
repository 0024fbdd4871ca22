from django.apps import AppConfig


class ConfigConfig(AppConfig):
    verbose_name = "Environment configuration"
    name = "config"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the environment file check)
        from config.environment import is_mock_mode
        from values.registry import registry

        # Values do not read the environment YAML: the registry asks this app (the layering of
        # docs/architecture.md) whether the sources are the development simulators.
        registry.is_mock_mode = is_mock_mode
