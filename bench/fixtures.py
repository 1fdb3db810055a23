"""What the clients need to reach one server: its address, items and credentials.

For the service they are made over REST, the way a client would: an owner (who
publishes) and a reader (whose one access token every subscriber socket presents), and
items the reader is a member of. The baselines have no accounts: any item id works.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from bench.servers import Kind, ServerProcess

PASSWORD = "bench-password-0123"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    kind: Kind
    host: str
    port: int
    items: tuple[str, ...]
    owner_token: str | None = None
    reader_token: str | None = None

    def ws_url(self, item_id: str, *, publisher: bool = False, batch: bool = False) -> str:
        url = f"ws://{self.host}:{self.port}/items/{quote(item_id)}/ws"
        token = self.owner_token if publisher else self.reader_token
        query = [f"token={token}"] if token else []
        if batch:
            query.append("batch=1")
        return f"{url}?{'&'.join(query)}" if query else url

    def multiplex_url(self) -> str:
        """`/ws`, many items on one socket, with the reader's token (the service only)."""
        return f"ws://{self.host}:{self.port}/ws?token={self.reader_token}"


def _user(http: httpx.Client, username: str) -> str:
    r = http.post("/auth/register", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    r = http.post("/auth/token", data={"username": username, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def prepare(server: ServerProcess, items: int, *, members: bool = True) -> Target:
    """Users, `items` items and tokens on `server` (the service only)."""
    prefix = f"b{secrets.token_hex(3)}"
    item_ids = tuple(f"{prefix}-{n}" for n in range(items))
    if server.kind != "ours":
        return Target(server.kind, "127.0.0.1", server.port, item_ids)
    with httpx.Client(base_url=server.http_base, timeout=TIMEOUT) as http:
        owner, reader = f"{prefix}-owner", f"{prefix}-reader"
        owner_token = _user(http, owner)
        reader_token = _user(http, reader)
        auth = {"Authorization": f"Bearer {owner_token}"}
        for item_id in item_ids:
            r = http.post("/items", json={"name": item_id, "id": item_id}, headers=auth)
            r.raise_for_status()
            if members:
                r = http.put(
                    f"/items/{item_id}/members/{reader}", json={"role": "reader"}, headers=auth
                )
                r.raise_for_status()
    return Target("ours", "127.0.0.1", server.port, item_ids, owner_token, reader_token)
