"""State backends behind one `Store` protocol: memory (embedded default) and Redis (durable, shared)."""

from meshctl.store.base import ChangeEvent, Store

__all__ = ["ChangeEvent", "Store"]
