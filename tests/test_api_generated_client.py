"""A client generated from the OpenAPI document (openapi-python-client, as a customer would run
it) works as written: it onboards a tenant, creates a key, posts a usage event and reads usage.
The generator must finish without a warning: a schema it cannot model would be a piece of the
API missing from every generated client."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.api_support import operator_token
from tests.conftest import unique

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "portal_api_client"


def _generate(document: dict, where: Path):
    (where / "openapi.json").write_text(json.dumps(document))
    # No post hooks: the generator would run ruff over the code, which this test does not read.
    # An invoice's PDF is a file: the generator takes files as application/octet-stream, so a
    # customer's config says the PDF is one (its documented override for such media types).
    (where / "config.yaml").write_text(
        "post_hooks: []\ncontent_type_overrides:\n  application/pdf: application/octet-stream\n"
    )
    result = subprocess.run(  # noqa: S603 - the pinned generator, fixed arguments
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(where / "openapi.json"),
            "--config",
            str(where / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))


def _submodules(package, *names):
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def test_a_generated_client_onboards_a_tenant_creates_a_key_posts_an_event_and_reads_usage(app, client, tmp_path):
    document = client.get("/api/v1/openapi.json").get_json()
    api = _generate(document, tmp_path)
    try:
        onboard, create_api_key, post_event, get_usage, models = _submodules(
            api,
            "api.tenants.onboard",
            "api.api_keys.create_api_key",
            "api.usage_events.post_event",
            "api.usage.get_usage",
            "models",
        )
        # Through the app's WSGI interface: the generated code's own HTTP requests, no test client.
        transport = {"transport": httpx.WSGITransport(app=app)}
        operator = api.AuthenticatedClient(
            base_url="http://portal.test", token=operator_token(app), httpx_args=transport
        )

        tenant_id = unique("genclient")
        onboarded = onboard.sync(
            client=operator,
            body=models.OnboardIn(tenant_id=tenant_id, company_name="Generated Client Ltd"),
        )
        assert isinstance(onboarded, models.OnboardOut), onboarded
        assert onboarded.tenant_id == tenant_id

        first_key = api.AuthenticatedClient(
            base_url="http://portal.test",
            token=onboarded.api_key,
            prefix="",
            auth_header_name="X-API-Key",
            httpx_args=transport,
        )
        created = create_api_key.sync(
            tenant_id=tenant_id,
            client=first_key,
            body=models.ApiKeyCreateIn(key_name="from the generated client"),
        )
        assert isinstance(created, models.ApiKeyCreateOut), created
        assert created.key_name == "from the generated client" and created.api_key.startswith(f"{tenant_id}_api_")

        event = models.EventIn.from_dict(
            {"tenant_id": tenant_id, "eventName": "pipeline_run", "eventIdempotencyKey": "run-1"}
        )
        ingested = post_event.sync(client=operator, body=event)
        assert isinstance(ingested, models.EventIngestOut), ingested
        assert ingested.tenant_id == tenant_id and not ingested.duplicate

        new_key = api.AuthenticatedClient(base_url="http://portal.test", token=created.api_key, httpx_args=transport)
        usage = get_usage.sync(tenant_id=tenant_id, client=new_key)
        assert isinstance(usage, models.UsageOut), usage
        assert usage.tenant_id == tenant_id
        assert usage.pipelines_run_count == 1
        runs = next(feature for feature in usage.features if feature.key == "pipeline_runs")
        assert runs.used == 1

        # The client reads the error envelope as the document declares it.
        refused = get_usage.sync(tenant_id="someone_else", client=new_key)
        assert isinstance(refused, models.ErrorEnvelope) and refused.detail == "Access denied"
    finally:
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]
