"""The registry of router kinds: the name saved in ``router.json`` -> the class that loads it.

Persistence must rebuild a router of the saved class without importing every router class by name
(that would make the bottom of the library depend on its top). Instead each router class records
itself here when it is defined (``BaseRouter.__init_subclass__``), so a user's own router subclass
can be saved and loaded like the built-in ones once its module is imported.
"""

from __future__ import annotations

import threading

from unirouter.exceptions import InvalidInputError, PersistenceError

__all__ = ["register_router_class", "registered_router_classes", "router_class"]

_CLASSES: dict[str, type] = {}
_LOCK = threading.Lock()


def register_router_class(cls: type, name: str | None = None, *, replace: bool = True) -> type:
    """Record ``cls`` under ``name`` (default: its class name); returns ``cls`` (usable as a decorator).

    Registering the same class again (or a redefinition from the same module) replaces it. Another
    class under a taken name is refused with :class:`InvalidInputError` when ``replace=True`` (an
    explicit call: saved routers of the first kind would load as the second), and silently skipped when
    ``replace=False`` (the automatic registration of every subclass: the first class keeps its name).
    """
    if not isinstance(cls, type):
        msg = f"register_router_class expects a class, got {type(cls).__name__}."
        raise InvalidInputError(msg)
    key = name or cls.__name__
    with _LOCK:
        known = _CLASSES.get(key)
        if known is not None and known is not cls and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            if not replace:
                return cls
            msg = (
                f"A router class named {key!r} is already registered ({known.__module__}.{known.__qualname__}); "
                f"register {cls.__module__}.{cls.__qualname__} under another name."
            )
            raise InvalidInputError(msg)
        _CLASSES[key] = cls
    return cls


def router_class(name: str, *, path: object = None) -> type:
    """The class registered under ``name``; :class:`PersistenceError` naming ``path`` if there is none."""
    with _LOCK:
        cls = _CLASSES.get(name)
    if cls is None:
        msg = (
            f"{path}: unknown router class {name!r}; import the module that defines it before loading "
            f"(known: {sorted(_CLASSES)})."
        )
        raise PersistenceError(msg, path=path)
    return cls


def registered_router_classes() -> dict[str, type]:
    """A copy of the registry (name -> class)."""
    with _LOCK:
        return dict(_CLASSES)
