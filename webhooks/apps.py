from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        # Every published change event queues its deliveries (values sits below webhooks and
        # offers this hook instead of importing them).
        from values.events import publisher
        from webhooks.services import change_event_queue

        publisher.on_published = change_event_queue
