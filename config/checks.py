"""`manage.py check` (and every server start) validates the active environment's YAML."""

from django.conf import settings
from django.core.checks import Error, register

from config.environment import load_environment
from core.errors import ConfigError


@register("dynconfig")
def environment_file_check(app_configs=None, **kwargs):
    try:
        load_environment(settings.DYNCONFIG_ENV)
    except ConfigError as error:
        return [Error(str(problem), id="dynconfig.E001") for problem in error.problems]
    return []
