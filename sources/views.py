"""Development simulators of the real APIs, served at /simulators/<name>/... in mock mode only."""

from __future__ import annotations

import time
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from config.environment import active_environment
from sources.simulators import SimRequest, simulator_for


@csrf_exempt
def simulator(request: HttpRequest, name: str, path: str = "") -> HttpResponse:
    environment = active_environment()
    simulate = simulator_for(name)
    if not environment.mock_mode or simulate is None:
        raise Http404("no simulator here")
    # The environment's `response_delay`: development feels the latency of the real APIs.
    time.sleep(environment.response_delay.total_seconds())
    query = {name: request.GET.getlist(name) for name in request.GET}
    headers = {name: value for name, value in request.headers.items()}
    # Simulators that build absolute links (Meta's paging.next) must know where they are mounted.
    headers["X-Forwarded-Prefix"] = f"/simulators/{name}"
    response = simulate(SimRequest(request.method, "/" + path, query, headers, request.body))
    body, content_type = response.encoded()
    reply = HttpResponse(body, status=response.status, content_type=content_type)
    for header, value in response.headers.items():
        if header.lower() != "content-type":
            reply[header] = value
    return reply
