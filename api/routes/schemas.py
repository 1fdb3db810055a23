"""REST request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)

from api.clock import iso_z
from api.kinds import DEFAULT_KIND, KINDS
from api.patterns import ITEM_ID_PATTERN, USERNAME_PATTERN

Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
ItemId = Annotated[str, StringConstraints(pattern=ITEM_ID_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Body):
    username: Username
    password: Password


class NewCredentials(Credentials):
    """A registration: also no dot at either end of the name (`alice.` is not `alice`
    to the eye, and must not be another account)."""

    @field_validator("username")
    @classmethod
    def _no_edge_dots(cls, value: str) -> str:
        if value.startswith(".") or value.endswith("."):
            raise ValueError("a username cannot begin or end with a dot")
        return value


class UserOut(BaseModel):
    id: str
    username: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class LoginOut(TokenOut):
    user: UserOut


class TicketIn(_Body):
    item_id: ItemId | None = None


class TicketOut(BaseModel):
    token: str
    expires_in: int


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refuse it everywhere for one behaviour.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _known_kind(value: str) -> str:
    if value not in KINDS:
        raise ValueError(f"unknown kind; this service offers {', '.join(sorted(KINDS))}")
    return value


KindName = Annotated[
    str,
    AfterValidator(_known_kind),
    Field(description="See `GET /kinds`.", json_schema_extra={"enum": sorted(KINDS)}),
]


class ItemIn(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_nul)]
    id: ItemId | None = None
    kind: KindName = DEFAULT_KIND


class ItemOut(BaseModel):
    id: str
    name: str
    owner: str
    created_at: datetime
    kind: str

    @field_serializer("created_at")
    def _ts(self, value: datetime) -> str:
        return iso_z(value)


class MemberIn(_Body):
    role: Literal["reader", "writer"]


class MemberOut(BaseModel):
    username: str
    role: Literal["owner", "reader", "writer"]


class MessageIn(BaseModel):
    data: Any = Field(description="Any JSON value.")


class MessageOut(BaseModel):
    item_id: str
    seq: int
    sender: str
    data: Any
    ts: str


class PresenceOut(BaseModel):
    count: int
    users: list[str]


class KindOut(BaseModel):
    kind: str
    description: str


class StateOut(BaseModel):
    item_id: str
    kind: str
    version: int
    state: dict[str, Any]


class StateChangeIn(_Body):
    """Exactly one of `ops` (a `document`) or `action` (a game such as `tictactoe`)."""

    ops: list[dict[str, Any]] | None = Field(
        None, description="JSON Patch (RFC 6902) operations, applied in order, all or none."
    )
    action: dict[str, Any] | None = Field(None, description='A game action: `{"move": 4}`.')

    @model_validator(mode="after")
    def _exactly_one(self) -> StateChangeIn:
        if (self.ops is None) == (self.action is None):
            raise ValueError("give exactly one of ops or action")
        return self


class DetailOut(BaseModel):
    detail: str
