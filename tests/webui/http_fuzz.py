"""Fuzz the web UI's REST API from its own OpenAPI description (schemathesis + Hypothesis).

    tally = fuzz(base_url, headers={"Authorization": "Bearer ..."}, examples=20)

Every operation in /api/v1/openapi.json gets `examples` schema-valid requests and
as many schema-breaking ones (wrong types, missing fields, odd path segments),
sent to a real server.  The answer's status is tallied; nothing is asserted here,
so the tests and the reliability benchmark draw their own lines from one tally.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

import requests


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    # "METHOD /path -> status" of each 5xx (a few kept, for the failure message).
    server_errors: list[str] = field(default_factory=list)
    # Each operation's documented statuses: 503 is declared (a command this
    # daemon lacks), so it is told apart from an undeclared 5xx.
    undeclared_5xx: int = 0

    @property
    def http_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def http_500(self) -> int:
        return self.statuses.get(500, 0)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.server_errors += other.server_errors[: 20 - len(self.server_errors)]
        self.undeclared_5xx += other.undeclared_5xx


def load_schema(base_url: str, headers: dict[str, str]):
    """The live server's own description (so the fuzz follows the API as served)."""
    import schemathesis

    request = urllib.request.Request(base_url + "/api/v1/openapi.json", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        document = json.load(response)
    return schemathesis.openapi.from_dict(document)


def fuzz(base_url: str, headers: dict[str, str] | None = None, examples: int = 20, seed: int = 20261122,
         schema_headers: dict[str, str] | None = None) -> Tally:
    """Send positive and negative cases for every operation; return what came back.

    `headers` go with every fuzzed request (credentials, or none at all);
    `schema_headers` fetch the description (it sits behind the login gate).
    """
    from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings
    from schemathesis import GenerationMode

    schema = load_schema(base_url, schema_headers if schema_headers is not None else (headers or {}))
    tally = Tally()
    session = requests.Session()
    api_url = base_url + "/api/v1"
    for result in schema.get_all_operations():
        operation = result.ok()
        declared = {int(code) for code in operation.definition.raw.get("responses", {}) if code.isdigit()}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @hypothesis_seed(seed)
            @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case) -> None:
                response = case.call(base_url=api_url, session=session, headers=dict(headers or {}),
                                     timeout=10, allow_redirects=False)
                tally.requests += 1
                tally.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    if response.status_code not in declared:
                        tally.undeclared_5xx += 1
                    if len(tally.server_errors) < 20:
                        tally.server_errors.append(
                            f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:200]}")
            one()
    session.close()
    return tally
