"""Saving and loading routers (JSON + ``.npy``, never pickle), and the registry of router kinds.

Sits above :mod:`unirouter.data` and :mod:`unirouter.embedding` and below the routers: it never
imports a router class. Router classes record themselves in :mod:`unirouter.persistence.registry`
when they are defined, and :func:`load_router` looks the saved kind up there.
"""

from unirouter.persistence.registry import register_router_class, registered_router_classes, router_class
from unirouter.persistence.store import MANIFEST, SCHEMA, load_router, read_router_info, save_router

__all__ = [
    "MANIFEST",
    "SCHEMA",
    "load_router",
    "read_router_info",
    "register_router_class",
    "registered_router_classes",
    "router_class",
    "save_router",
]
