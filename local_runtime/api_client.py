"""The HTTP client the CLI, the demos and the benchmarks call the API with: the key on every
request, and a throttled request (429: over the client's rate limit) sent again after the
Retry-After the API gives, as a well-behaved client does."""

from __future__ import annotations

import time

import httpx

MAX_WAITS = 30  # a 429 answer is returned after this many waits
MAX_WAIT_S = 10.0


class PatientTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(MAX_WAITS):
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            wait = _seconds(response.headers.get("retry-after"))
            response.close()
            time.sleep(wait)
        return super().handle_request(request)


def _seconds(value: str | None) -> float:
    try:
        return min(MAX_WAIT_S, max(0.05, float(value))) if value else 1.0
    except ValueError:
        return 1.0


def api_client(url: str, api_key: str, timeout: float = 60) -> httpx.Client:
    headers = {"x-api-key": api_key}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=PatientTransport())
