"""What the lifespan builds, kept on `app.state.runtime` for the routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth.attempts import AuthLimits
from api.auth.credentials import CredentialResolver
from api.auth.security import TokenCodec
from api.cache import TTLCache
from api.config import Settings
from api.items.service import Access
from api.items.state_hub import StateHub
from api.items.state_writer import StateWriter
from api.items.writer import MessageWriter
from api.realtime.broker import Broker
from api.realtime.hub import Hub
from api.stats import StatsFeed


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    codec: TokenCodec
    resolver: CredentialResolver
    broker: Broker
    hub: Hub
    writer: MessageWriter
    access_cache: TTLCache[tuple[str, str], Access]
    auth_limits: AuthLimits
    stats: StatsFeed
    states: StateWriter
    state_hub: StateHub
