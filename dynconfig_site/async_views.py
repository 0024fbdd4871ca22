"""Views that run on the event loop when the project is served over ASGI (docs/deploy.md).

`GET /healthz/reads/`: every value type read once, for the empty context, with
`values.aget_many` from the event loop, and which tier answered each: what an async consumer of
this process would get now. It shows tiers, never values, like the home page. Under ASGI an L1
hit is answered on the loop itself and any other read on a thread of the engine's own pool; the
body says which server interface ran it. Under WSGI Django runs the same view in an event loop
of its own per request.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from values import aget_many
from values.registry import registry


@require_GET
async def reads_from_event_loop(request: HttpRequest) -> JsonResponse:
    keys = sorted({value_type.key for value_type in registry.snapshot().types.values()})  # aliases folded
    answers = await aget_many((key, {}) for key in keys)
    return JsonResponse(
        {
            "interface": "asgi" if isinstance(request, ASGIRequest) else "wsgi",
            "reads": {
                answer.key: {
                    "tier": answer.provenance.tier,
                    "origin": answer.provenance.origin,
                    "is_degraded": answer.provenance.is_degraded,
                }
                for answer in answers
            },
        }
    )
