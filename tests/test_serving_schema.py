"""Property-based requests from the OpenAPI document (schemathesis): no input gets a 5xx."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from agegender.serving.app import create_app
from agegender.serving.service import InferenceService
from agegender.serving.settings import ServeSettings


def _app():
    service = InferenceService(ServeSettings(max_upload_bytes=2**20))
    service.load()  # ready before the first request: a loading server rightly answers 503
    return create_app(service.settings, service)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error])
