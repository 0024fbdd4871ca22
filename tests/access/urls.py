"""The project's URLs plus /probe/, a tiny API view guarded like the operator endpoints:
reads need a read scope, writes need values:write (access.permissions.ReadOrWriteValues)."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import ReadOrWriteValues
from dynconfig_site.urls import urlpatterns as project_urlpatterns


class ProbeApi(APIView):
    permission_classes = [ReadOrWriteValues]

    def get(self, request):
        return Response({"read": True})

    def post(self, request):
        return Response({"written": True})


urlpatterns = [path("probe/", ProbeApi.as_view()), *project_urlpatterns]

handler404 = "dynconfig_site.api_errors.json_404"
handler500 = "dynconfig_site.api_errors.json_500"
