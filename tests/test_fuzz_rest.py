"""schemathesis drives the REST API through the real Envoy from the generated OpenAPI document,
once per backend: no 5xx, every answer's status documented and its body as documented.

Bounded: FUZZ_EXAMPLES cases per operation (about a minute per backend on two cores).
"""

from __future__ import annotations

import pathlib

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

FUZZ_EXAMPLES = 150
DOCUMENT = pathlib.Path(__file__).resolve().parents[1] / "generated" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(DOCUMENT))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@SCHEMA.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_rest_api_matches_its_openapi_document(case, stack, calls_per_backend):
    calls_per_backend[stack.backend] += 1
    case.call_and_validate(
        base_url=stack.rest_url, headers={"authorization": f"Bearer {stack.admin_key}"}, checks=CHECKS
    )
