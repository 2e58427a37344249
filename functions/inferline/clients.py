"""API clients: who sent a request, and whom a client's batch results may be emailed to.

Each named client (cdk.json `clients`; locally $INFERLINE_HOME/clients.json) has its own API key,
usage plan and rate limit. A request is known by its key's id, never the key: API Gateway puts it
in the event at requestContext.identity.apiKeyId (the predict workflow's input carries it too),
and the Lambdas that need the client read the mapping from the API_CLIENTS variable, which the CDK
app and the local runtime both write:

    API_CLIENTS='[{"key_id": "a1b2c3", "client": "analytics", "recipients": ["example.com"]}]'

A recipient is an address (ops@example.com) or a domain (example.com: any address at it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

CLIENTS_ENV = "API_CLIENTS"
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"


@dataclass(frozen=True)
class Client:
    name: str
    recipients: tuple[str, ...] = ()

    def may_email(self, address: str) -> bool:
        """Whether results may be sent to `address` (an address already checked as one)."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        for allowed in (r.strip().lower() for r in self.recipients):
            if "@" in allowed.lstrip("@"):  # one address
                if address == allowed:
                    return True
            elif domain == allowed.lstrip("@"):  # any address at a domain
                return True
        return False


def client_entry(key_id: str, client: Client) -> dict[str, Any]:
    """One API_CLIENTS entry (the CDK app writes them with its key id tokens in)."""
    return {"key_id": key_id, "client": client.name, "recipients": list(client.recipients)}


def client_entries(clients: Mapping[str, Client]) -> str:
    """The API_CLIENTS value for {key id: client}."""
    return json.dumps([client_entry(k, c) for k, c in clients.items()], separators=(",", ":"))


@cache
def _parse(value: str) -> dict[str, Client]:
    entries = json.loads(value) if value.strip() else []
    return {e["key_id"]: Client(e["client"], tuple(e.get("recipients") or ())) for e in entries}


def clients() -> dict[str, Client]:
    """{API key id: client}, from API_CLIENTS."""
    return _parse(os.environ.get(CLIENTS_ENV, ""))


def client_for(key_id: str | None) -> Client | None:
    """The client whose API key (by id: requestContext.identity.apiKeyId) sent a request, or None
    if the key is not a configured client's."""
    return clients().get(key_id) if key_id else None
