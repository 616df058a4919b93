"""HTTP fuzzing against the server's own OpenAPI schema (schemathesis): every route, with and
without the API key, on a real server on 127.0.0.1. Whatever arrives, no 5xx, and every error
is ``{"error", "kind"}``. Bounded: a fixed number of examples per route and a time limit per
request; ``WHICHVOICE_FUZZ_EXAMPLES`` raises the count for a longer run (make fuzz)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from . import server as server_process

pytestmark = pytest.mark.slow

KEY = "fuzz-key"
OPEN = ("/healthz", "/ping", "/static/", "/favicon.ico")  # answered without the key
EXAMPLES = int(os.environ.get("WHICHVOICE_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzzed_server(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gallery = tmp_path_factory.mktemp("fuzz") / "g.sqlite"
    args = ["--gallery", str(gallery), "--api-key", KEY, "--synth-per-minute", "20"]
    args += ["--max-upload-mb", "1", "--max-duration", "20"]
    with server_process.serving(trained_run, *args) as started:
        yield started.url


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: str):
    return schemathesis.openapi.from_url(
        f"{fuzzed_server}/openapi.json", headers={"X-API-Key": KEY}
    )


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a real one
    database=None,
    suppress_health_check=list(HealthCheck),
)


def check(case, server: str, *, with_key: bool) -> int:
    """One generated request, held to the contract; returns its status."""
    headers = {"X-API-Key": KEY} if with_key else {"X-API-Key": "not-the-key"}
    response = case.call(base_url=server, headers=headers, timeout=120)
    status = response.status_code
    where = f"{case.method} {case.formatted_path}: {status} {response.text[:300]}"
    assert status < 500, where
    if not with_key and not case.formatted_path.startswith(OPEN):
        assert status == 401, where
    if status >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error", "kind"}, where
        assert body["error"] and "Traceback" not in body["error"], where
    return status


def fuzzer(operation, server: str, *, with_key: bool, sent: list[int]):
    """A hypothesis test of one operation: each example's status is appended to ``sent``."""

    @FUZZ
    @given(case=operation.as_strategy())
    def fuzz(case) -> None:
        sent.append(check(case, server, with_key=with_key))

    return fuzz


def fuzz_every_route(schema, server: str, *, with_key: bool) -> int:
    """Run ``check`` on generated requests of each operation in turn (schemathesis' pytest
    plugin does not run on this pytest); returns how many operations were fuzzed."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        sent: list[int] = []
        fuzzer(operation, server, with_key=with_key, sent=sent)()
        assert sent, f"{operation.label}: no request was made"
        print(operation.label, len(sent), sorted(set(sent)))
    return len(operations)


def test_no_input_breaks_the_server(api_schema, fuzzed_server: str) -> None:
    assert fuzz_every_route(api_schema, fuzzed_server, with_key=True) >= 12  # every route


def test_without_the_key_every_route_but_the_open_ones_is_refused(
    api_schema, fuzzed_server: str
) -> None:
    assert fuzz_every_route(api_schema, fuzzed_server, with_key=False) >= 12
