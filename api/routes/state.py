"""Item state over REST: `GET|POST /items/{item_id}/state`, `GET /kinds`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from api.deps import CurrentUser, DbDep, RuntimeDep
from api.errors import DomainError, Forbidden, NotFound, Unavailable
from api.items import service, state
from api.items.access import cached_access
from api.items.state import Change, StoredState, TooLarge
from api.kinds import KINDS, Conflict, Illegal, Refusal
from api.routes.items import ItemIdPath, JSONText, http_error
from api.routes.schemas import DetailOut, KindOut, StateChangeIn, StateOut

router = APIRouter(tags=["state"])

REFUSALS = {
    403: {"model": DetailOut, "description": "Readers cannot change the state"},
    404: {"model": DetailOut, "description": "No such item, or not the caller's"},
    409: {"model": DetailOut, "description": "A failed `test` op, or an illegal action"},
    413: {"model": DetailOut, "description": "The state would exceed MAX_STATE_BYTES"},
    503: {"model": DetailOut, "description": "The store is unreachable: nothing was stored"},
}


@router.get("/kinds")
async def list_kinds(principal: CurrentUser) -> list[KindOut]:
    """The kinds of item this service offers."""
    return [KindOut(kind=k.name, description=k.description) for k in KINDS.values()]


@router.get("/items/{item_id}/state", response_model=StateOut)
async def get_state(item_id: ItemIdPath, principal: CurrentUser, db: DbDep) -> Response:
    """The item's current state and version (owner and members)."""
    try:
        await service.access(db, item_id, principal.user_id)
        current = await state.read_state(db, item_id)
    except NotFound as exc:
        raise http_error(exc) from exc
    return JSONText(current.body())


@router.post("/items/{item_id}/state", response_model=StateOut, responses=REFUSALS)  # type: ignore[arg-type]
async def change_state(
    item_id: ItemIdPath, body: StateChangeIn, principal: CurrentUser, runtime: RuntimeDep
) -> Response:
    """Change the state (owner and writers): JSON Patch `ops` for a document, an
    `action` for a game. Applied to the stored version, which it bumps by one."""
    try:
        standing = await cached_access(
            runtime.access_cache, runtime.session_factory, item_id, principal.user_id
        )
        if not standing.can_publish:
            raise Forbidden("readers cannot change the state")
    except (NotFound, Forbidden) as exc:
        raise http_error(exc) from exc
    field, value = ("ops", body.ops) if body.ops is not None else ("action", body.action)
    try:
        outcome = await runtime.states.submit(
            Change(item_id, principal.user_id, principal.username, field, value)
        )
    except Unavailable as exc:
        # Nothing was stored: the client may send it again.
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=exc.detail) from exc
    if isinstance(outcome, StoredState):
        return JSONText(outcome.body())
    raise refusal_error(outcome, field)


def refusal_error(outcome: DomainError | Refusal, field: str) -> HTTPException:
    if isinstance(outcome, NotFound | Forbidden):
        return http_error(outcome)
    if isinstance(outcome, TooLarge):
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=outcome.reason)
    if isinstance(outcome, Conflict | Illegal):
        return HTTPException(status.HTTP_409_CONFLICT, detail=outcome.reason)
    if isinstance(outcome, Refusal):
        # FastAPI's validation-error shape, as for any other invalid body.
        detail = [{"type": "invalid_change", "loc": ["body", field], "msg": outcome.reason}]
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
    return HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, detail="not applied")
