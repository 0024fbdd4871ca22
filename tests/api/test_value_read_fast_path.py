"""The read endpoint serves the answer's JSON as made once (Answer.as_json), not through DRF's
serializer and renderer: the body must be byte for byte what the renderer would make, with the
same headers, and DRF still renders what its renderer alone can (a media type with parameters)."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer

from tests.api.test_values_api import (
    ANSWER_FIELDS,
    BUDGET_URL,
    PROVENANCE_FIELDS,
    US_RETAIL,
)
from values import get_value


def test_value_read__l1_hit__body_is_byte_for_byte_drfs_rendering_of_the_answer(budget_server, api_client):
    api_client.get(BUDGET_URL, US_RETAIL)  # fetched: the answer is now in L1

    response = api_client.get(BUDGET_URL, US_RETAIL)

    answer = get_value("budget_thresholds", US_RETAIL)
    assert answer.provenance.tier == "l1"
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(answer.as_dict())
    assert set(response.json()) == ANSWER_FIELDS
    assert set(response.json()["provenance"]) == PROVENANCE_FIELDS
    assert response["ETag"] == f'W/"{answer.version()}"'
    assert response["Cache-Control"].startswith("max-age=")


def test_value_read__json_with_indent_asked__drf_renders_it_as_before(budget_server, api_client):
    response = api_client.get(BUDGET_URL, US_RETAIL, HTTP_ACCEPT="application/json; indent=2")

    assert response.status_code == 200
    assert response.content.startswith(b'{\n  "key"')
    assert set(response.json()) == ANSWER_FIELDS


def test_value_read__if_none_match__304_without_body_or_content_type(budget_server, api_client):
    etag = api_client.get(BUDGET_URL, US_RETAIL)["ETag"]

    repeat = api_client.get(BUDGET_URL, US_RETAIL, HTTP_IF_NONE_MATCH=etag)

    assert repeat.status_code == 304
    assert repeat.content == b""
    assert repeat["ETag"] == etag
    assert "Content-Type" not in repeat
