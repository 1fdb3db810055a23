"""Every REST call of the contract through `Client`, and its one error type."""

from __future__ import annotations

import pytest

from api.client import Client, HTTPError, ServerUnavailable
from tests.python_client.conftest import FAST, NewClient, me
from tests.servers import LiveServer, free_port
from tests.support import PASSWORD, unique


async def test_identity_calls(server: LiveServer) -> None:
    async with Client(server.base_url) as client:
        name = unique()
        user = await client.register(name, PASSWORD)
        assert user["username"] == name
        login = await client.login(name, PASSWORD)
        assert login["token_type"] == "bearer" and login["user"] == user
        assert client.token == login["access_token"]
        assert await client.me() == user
        fresh = await client.refresh()
        assert fresh["access_token"] != login["access_token"]
        assert client.token == fresh["access_token"]
        ticket = await client.ws_ticket("some-item")
        assert ticket["token"] and ticket["expires_in"] > 0
        await client.logout()
        assert client.token is None
        with pytest.raises(HTTPError) as unauthorized:
            await client.me()
        assert unauthorized.value.status == 401
        # The OAuth2 password form: a token of a new session, no cookie.
        token = await client.password_token(name, PASSWORD)
        assert client.token == token["access_token"]
        assert not client.tokens.has_session
        assert await client.me() == user


async def test_http_errors_carry_status_and_detail(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    name = await me(alice)
    with pytest.raises(HTTPError) as taken:
        await alice.register(name, PASSWORD)
    assert taken.value.status == 409
    assert isinstance(taken.value.detail, str) and taken.value.detail
    with pytest.raises(HTTPError) as wrong:
        await bob.login(name, "not the password")
    assert wrong.value.status == 401
    item = (await alice.create_item("x"))["id"]
    with pytest.raises(HTTPError) as hidden:
        await bob.item(item)
    assert hidden.value.status == 404
    await alice.add_member(item, await me(bob), "reader")
    with pytest.raises(HTTPError) as reader:
        await bob.post_message(item, "no")
    assert reader.value.status == 403
    with pytest.raises(HTTPError) as invalid:
        await alice.messages(item, limit=0)
    assert invalid.value.status == 422 and isinstance(invalid.value.detail, list)
    with pytest.raises(HTTPError) as bad_id:
        await alice.item("a/b")
    assert bad_id.value.status in (404, 422)


async def test_items_members_messages_presence(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    bob_name = await me(bob)
    item_id = unique("item")
    item = await alice.create_item("Launch plan", item_id=item_id)
    assert (item["id"], item["name"], item["owner"]) == (item_id, "Launch plan", await me(alice))
    assert await alice.item(item_id) == item
    assert item in await alice.items()
    assert await alice.add_member(item_id, bob_name, "writer") == {
        "username": bob_name,
        "role": "writer",
    }
    assert {"username": bob_name, "role": "writer"} in await alice.members(item_id)
    assert item in await bob.items()
    posted = [await bob.post_message(item_id, n) for n in range(5)]
    assert [m["seq"] for m in posted] == [1, 2, 3, 4, 5]
    assert await alice.messages(item_id, after=1, limit=2) == posted[1:3]
    assert [m async for m in alice.history(item_id, after=0, page=2)] == posted
    assert [m async for m in alice.history(item_id, after=5)] == []
    assert await alice.presence(item_id) == {"count": 0, "users": []}
    await alice.remove_member(item_id, bob_name)
    with pytest.raises(HTTPError):
        await bob.item(item_id)
    await alice.delete_item(item_id)
    with pytest.raises(HTTPError) as gone:
        await alice.item(item_id)
    assert gone.value.status == 404


async def test_a_server_that_is_down_fails_rest_calls_at_once() -> None:
    async with Client(f"http://127.0.0.1:{free_port()}", backoff=FAST) as client:
        with pytest.raises(ServerUnavailable):
            await client.register(unique(), PASSWORD)
