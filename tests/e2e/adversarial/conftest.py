from tests.e2e.adversarial.world import ctx, world

__all__ = ["ctx", "world"]
