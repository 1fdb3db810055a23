"""Items, members, messages and presence over REST."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from api import jsoncheck
from api.deps import (
    CurrentUser,
    DbDep,
    HubDep,
    RuntimeDep,
    authenticates_itself,
    current_principal,
    runtime_of,
)
from api.errors import Conflict, Forbidden, NotFound, Unavailable
from api.items import messages, service
from api.items.access import cached_access
from api.models import Role
from api.patterns import ITEM_ID_PATTERN, USERNAME_PATTERN
from api.routes.schemas import (
    ItemIn,
    ItemOut,
    MemberIn,
    MemberOut,
    MessageIn,
    MessageOut,
    PresenceOut,
)
from api.runtime import Runtime

router = APIRouter(prefix="/items", tags=["items"])

ItemIdPath = Annotated[str, Path(pattern=ITEM_ID_PATTERN)]
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN)]
STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409}


def http_error(exc: NotFound | Forbidden | Conflict) -> HTTPException:
    return HTTPException(STATUS[type(exc)], detail=exc.detail)


def _out(view: service.ItemView) -> ItemOut:
    return ItemOut(
        id=view.id, name=view.name, owner=view.owner, created_at=view.created_at, kind=view.kind
    )


class JSONText(Response):
    media_type = "application/json"


# The hottest route first: FastAPI tries a request's routes in order, and each one
# passed over costs a match attempt.
@router.post(
    "/{item_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MessageIn.model_json_schema()}},
        }
    },
    responses={413: {"description": "Body larger than MAX_MESSAGE_BYTES"}},
)
@authenticates_itself
async def post_message(item_id: ItemIdPath, request: Request) -> Response:
    """Publish a message (owner and writers); stored, then delivered to every socket."""
    # Neither `RuntimeDep` nor `CurrentUser`: dependencies FastAPI solves cost more than
    # what they do. An `item_id` that fails its pattern is answered 422 even before the
    # credentials are read (the contract has it before any access check).
    runtime = runtime_of(request)
    principal = await current_principal(request)
    try:
        standing = await cached_access(
            runtime.access_cache, runtime.session_factory, item_id, principal.user_id
        )
        if not standing.can_publish:
            raise Forbidden("readers cannot publish")
    except (NotFound, Forbidden) as exc:
        raise http_error(exc) from exc
    data = await publish_body(request, runtime)
    try:
        msg = await runtime.writer.publish(item_id, principal.user_id, principal.username, data)
    except (NotFound, Forbidden) as exc:
        raise http_error(exc) from exc
    except Unavailable as exc:
        # Nothing was stored: the client may publish it again.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=exc.detail) from exc
    return JSONText(msg.body(), status_code=status.HTTP_201_CREATED)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(body: ItemIn, principal: CurrentUser, db: DbDep) -> ItemOut:
    """Create an item owned by the caller."""
    try:
        return _out(await service.create_item(db, principal.user_id, body.name, body.id, body.kind))
    except Conflict as exc:
        raise http_error(exc) from exc


@router.get("")
async def list_items(principal: CurrentUser, db: DbDep) -> list[ItemOut]:
    """Items the caller owns or is a member of."""
    return [_out(view) for view in await service.list_items(db, principal.user_id)]


@router.get("/{item_id}")
async def get_item(item_id: ItemIdPath, principal: CurrentUser, db: DbDep) -> ItemOut:
    """One item (owner and members)."""
    try:
        return _out(await service.get_item(db, item_id, principal.user_id))
    except NotFound as exc:
        raise http_error(exc) from exc


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: ItemIdPath, principal: CurrentUser, hub: HubDep, db: DbDep) -> None:
    """Delete an item, its members and messages (owner); its sockets close."""
    try:
        await service.delete_item(db, item_id, principal.user_id)
    except (NotFound, Forbidden) as exc:
        raise http_error(exc) from exc
    await hub.revoke_item(item_id)


@router.get("/{item_id}/members")
async def list_members(item_id: ItemIdPath, principal: CurrentUser, db: DbDep) -> list[MemberOut]:
    """The owner and the members, with their roles."""
    try:
        rows = await service.list_members(db, item_id, principal.user_id)
    except NotFound as exc:
        raise http_error(exc) from exc
    return [MemberOut(username=name, role=role) for name, role in rows]


@router.put("/{item_id}/members/{username}")
async def put_member(
    item_id: ItemIdPath,
    username: UsernamePath,
    body: MemberIn,
    principal: CurrentUser,
    hub: HubDep,
    db: DbDep,
) -> MemberOut:
    """Add a member or change their role (owner)."""
    try:
        member_id, registered = await service.set_member(
            db, item_id, principal.user_id, username, Role(body.role)
        )
    except (NotFound, Forbidden, Conflict) as exc:
        raise http_error(exc) from exc
    await hub.role_changed(item_id, member_id)
    return MemberOut(username=registered, role=body.role)


@router.delete("/{item_id}/members/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_member(
    item_id: ItemIdPath,
    username: UsernamePath,
    principal: CurrentUser,
    hub: HubDep,
    db: DbDep,
) -> None:
    """Remove a member (owner); their sockets on the item close with 1008 `forbidden`."""
    try:
        member_id = await service.remove_member(db, item_id, principal.user_id, username)
    except (NotFound, Forbidden) as exc:
        raise http_error(exc) from exc
    await hub.revoke_member(item_id, member_id)


async def publish_body(request: Request, runtime: Runtime) -> str:
    """The `data` of the raw body as JSON text, read up to MAX_MESSAGE_BYTES whatever its
    framing (413 beyond).

    `MessageIn` is `{"data": <any JSON>}`: once orjson has parsed the body there is
    nothing left for pydantic to check, so the body is not validated a second time.
    """
    limit = runtime.settings.max_message_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="body too large")
        chunks.append(chunk)
    try:
        raw = jsoncheck.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise HTTPException(
            422,
            detail=[{"type": "json_invalid", "loc": ["body"], "msg": "invalid JSON"}],
        ) from exc
    except jsoncheck.JsonRefused as exc:
        raise HTTPException(
            422, detail=[{"type": "json_invalid", "loc": ["body"], "msg": str(exc)}]
        ) from exc
    if not isinstance(raw, dict) or "data" not in raw:
        raise HTTPException(
            422,
            detail=[{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}],
        )
    return messages.encode_data(raw["data"])


@router.get("/{item_id}/messages", response_model=list[MessageOut])
async def get_messages(
    item_id: ItemIdPath,
    principal: CurrentUser,
    runtime: RuntimeDep,
    db: DbDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Stored messages with `seq > after`, ascending, at most `limit` and at most
    MAX_HISTORY_PAGE_BYTES (at least one message); a page cut short by its bytes has a
    `Link: <...?after=S&limit=M>; rel="next"` header where to continue."""
    try:
        await service.access(db, item_id, principal.user_id)
    except NotFound as exc:
        raise http_error(exc) from exc
    # Any non-negative integer is valid; past the largest storable seq there is nothing.
    rows, cut = await messages.history(
        db, item_id, min(after, messages.MAX_SEQ), limit, runtime.settings.max_history_page_bytes
    )
    headers = None
    if cut:
        next_page = f"/items/{quote(item_id, safe='')}/messages?after={rows[-1].seq}&limit={limit}"
        headers = {"Link": f'<{next_page}>; rel="next"'}
    return JSONText("[" + ",".join(m.body() for m in rows) + "]", headers=headers)


@router.get("/{item_id}/presence")
async def get_presence(
    item_id: ItemIdPath, principal: CurrentUser, hub: HubDep, db: DbDep
) -> PresenceOut:
    """Users with an open socket on the item, sorted by username."""
    try:
        await service.access(db, item_id, principal.user_id)
    except NotFound as exc:
        raise http_error(exc) from exc
    users = await hub.presence.users(item_id)
    return PresenceOut(count=len(users), users=users)


__all__ = ["Depends", "router"]
