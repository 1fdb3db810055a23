"""`Client`: every REST call of the service, and the factory of its channels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from api.client.channel import Channel
from api.client.errors import HTTPError, ProtocolError, ServerUnavailable
from api.client.multiplex import Multiplex
from api.client.refresh import Tokens, response_detail
from api.client.retry import Backoff
from api.client.sockets import MAX_BUFFERED
from api.client.types import Item, ItemState, Kind, Member, Message, Presence, Token, User

Role = Literal["reader", "writer"]


def _seg(value: str) -> str:
    """One path segment: ids are validated by the server, never reinterpreted as a path."""
    return quote(value, safe="")


class Client:
    """An asyncio client of one Item Channels server.

    `Client(url)` then `login()` keeps a session (the `session` cookie) and renews the
    access token from it; `Client(url, token=...)` uses a token obtained elsewhere.
    Every REST failure raises `HTTPError` (`.status`, `.detail`); an unreachable server
    raises `ServerUnavailable` at once.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)
        self.tokens = Tokens(self._http, token)
        self.backoff = backoff or Backoff()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def token(self) -> str | None:
        """The current access token (renewed as it nears expiry)."""
        return self.tokens.token

    async def _call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        auth: bool = True,
        **kwargs: Any,
    ) -> Any:
        headers: dict[str, str] = {}
        if auth:
            token = await self.tokens.current()
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{method} {path}: {exc!r}") from exc
        if response.status_code != expect:
            raise HTTPError(method, path, response.status_code, response_detail(response))
        if expect == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ProtocolError(f"{method} {path}: the answer is not JSON") from exc

    def _remember(self, body: dict[str, Any]) -> None:
        token = body.get("access_token")
        if not isinstance(token, str):
            raise ProtocolError("no access_token in the answer")
        expires_in = body.get("expires_in")
        self.tokens.set(token, float(expires_in) if isinstance(expires_in, int | float) else None)

    # Identity (CONTRACT §2).

    async def register(self, username: str, password: str) -> User:
        body = {"username": username, "password": password}
        return cast(User, await self._call("POST", "/auth/register", 201, auth=False, json=body))

    async def login(self, username: str, password: str) -> Token:
        """Open a session: its cookie is kept, and renews the access token when it expires."""
        body = {"username": username, "password": password}
        answer = await self._call("POST", "/auth/login", 200, auth=False, json=body)
        self._remember(answer)
        return cast(Token, answer)

    async def password_token(self, username: str, password: str) -> Token:
        """`POST /auth/token` (OAuth2 password form): a token without a session cookie,
        renewable only while it is valid."""
        form = {"username": username, "password": password}
        answer = await self._call("POST", "/auth/token", 200, auth=False, data=form)
        self._remember(answer)
        return cast(Token, answer)

    async def logout(self) -> None:
        """Revoke the session behind the current credential (its sockets close)."""
        await self._call("POST", "/auth/logout", 204)
        self._http.cookies.clear()
        self.tokens.set(None)

    async def me(self) -> User:
        return cast(User, await self._call("GET", "/auth/me", 200))

    async def refresh(self) -> Token:
        """A fresh access token of the same session (also done by itself before expiry)."""
        return cast(Token, await self.tokens.renew())

    async def ws_ticket(self, item_id: str | None = None) -> dict[str, Any]:
        """A single-use channel ticket (`{"token","expires_in"}`), limited to `item_id`."""
        body = {"item_id": item_id} if item_id is not None else None
        return cast(dict[str, Any], await self._call("POST", "/auth/ws-ticket", 200, json=body))

    # Items, members, messages (CONTRACT §3).

    async def create_item(
        self, name: str, item_id: str | None = None, kind: str | None = None
    ) -> Item:
        body: dict[str, Any] = {"name": name}
        if item_id is not None:
            body["id"] = item_id
        if kind is not None:
            body["kind"] = kind
        return cast(Item, await self._call("POST", "/items", 201, json=body))

    async def items(self) -> list[Item]:
        return cast(list[Item], await self._call("GET", "/items", 200))

    async def item(self, item_id: str) -> Item:
        return cast(Item, await self._call("GET", f"/items/{_seg(item_id)}", 200))

    async def delete_item(self, item_id: str) -> None:
        await self._call("DELETE", f"/items/{_seg(item_id)}", 204)

    async def members(self, item_id: str) -> list[Member]:
        return cast(list[Member], await self._call("GET", f"/items/{_seg(item_id)}/members", 200))

    async def add_member(self, item_id: str, username: str, role: Role) -> Member:
        """Add a member, or change their role."""
        path = f"/items/{_seg(item_id)}/members/{_seg(username)}"
        return cast(Member, await self._call("PUT", path, 200, json={"role": role}))

    async def remove_member(self, item_id: str, username: str) -> None:
        await self._call("DELETE", f"/items/{_seg(item_id)}/members/{_seg(username)}", 204)

    async def post_message(self, item_id: str, data: Any) -> Message:
        """Publish over REST: the stored message object."""
        path = f"/items/{_seg(item_id)}/messages"
        return cast(Message, await self._call("POST", path, 201, json={"data": data}))

    async def messages(self, item_id: str, after: int = 0, limit: int = 100) -> list[Message]:
        """One page: the messages with `seq > after`, ascending, at most `limit` (≤ 1000)."""
        path = f"/items/{_seg(item_id)}/messages"
        params = {"after": after, "limit": limit}
        return cast(list[Message], await self._call("GET", path, 200, params=params))

    async def history(
        self, item_id: str, after: int = 0, page: int = 1000
    ) -> AsyncIterator[Message]:
        """Every message with `seq > after`, page after page."""
        while True:
            batch = await self.messages(item_id, after=after, limit=page)
            for message in batch:
                yield message
            if len(batch) < page:
                return
            after = batch[-1]["seq"]

    async def presence(self, item_id: str) -> Presence:
        path = f"/items/{_seg(item_id)}/presence"
        return cast(Presence, await self._call("GET", path, 200))

    # Item state (CONTRACT §4c).

    async def kinds(self) -> list[Kind]:
        return cast(list[Kind], await self._call("GET", "/kinds", 200))

    async def state(self, item_id: str) -> ItemState:
        """The item's current state and its version."""
        return cast(ItemState, await self._call("GET", f"/items/{_seg(item_id)}/state", 200))

    async def patch(self, item_id: str, ops: list[dict[str, Any]]) -> ItemState:
        """Change a `document` by JSON Patch (all operations or none); a failed `test`
        raises `HTTPError` 409, a patch that does not apply 422."""
        return await self._change(item_id, {"ops": ops})

    async def action(self, item_id: str, action: dict[str, Any]) -> ItemState:
        """Act on a game (`{"move": 4}` in `tictactoe`); an illegal one raises
        `HTTPError` 409 with the rule it breaks as its detail."""
        return await self._change(item_id, {"action": action})

    async def _change(self, item_id: str, body: dict[str, Any]) -> ItemState:
        path = f"/items/{_seg(item_id)}/state"
        return cast(ItemState, await self._call("POST", path, 200, json=body))

    # The item channel (CONTRACT §4) and many items on one socket (§4b).

    @property
    def _ws_base(self) -> str:
        return "ws" + self.url.removeprefix("http") if self.url.startswith("http") else self.url

    def channel(
        self,
        item_id: str,
        since: int | None = None,
        *,
        publish_timeout: float = 10.0,
        on_presence: Callable[[dict[str, Any]], None] | None = None,
        state: bool = False,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        max_buffered: int | None = MAX_BUFFERED,
    ) -> Channel:
        """`async with client.channel(item_id, since=N) as channel:` — see `Channel`."""
        return Channel(
            f"{self._ws_base}/items/{_seg(item_id)}/ws",
            self.tokens,
            since=since,
            backoff=self.backoff,
            publish_timeout=publish_timeout,
            on_presence=on_presence,
            state=state,
            on_state=on_state,
            max_buffered=max_buffered,
        )

    def connect(
        self, *, timeout: float = 10.0, max_buffered: int | None = MAX_BUFFERED
    ) -> Multiplex:
        """`async with client.connect() as ws:` — one socket to `/ws` for any number of
        items; see `Multiplex`. `timeout` bounds each request's wait for its answer."""
        return Multiplex(
            f"{self._ws_base}/ws",
            self.tokens,
            backoff=self.backoff,
            timeout=timeout,
            max_buffered=max_buffered,
        )
