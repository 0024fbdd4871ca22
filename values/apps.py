from django.apps import AppConfig


class ValuesConfig(AppConfig):
    name = "values"

    def ready(self) -> None:
        # audit_record tells values.events of every operator change (audit sits below values).
        from audit import history
        from values.events import operator_change_publish
        from values.registry import registry

        history.after_record = operator_change_publish
        # ...and of every version bump, so that this process reads its own change at once.
        history.after_version_bump = registry.version_bumped
