"""Capability filtering: send a request only to candidates that can serve it.

A request that carries tools, images or a structured-output schema fails (or silently degrades) on a
model without that capability. The plugins say which capabilities a request needs and how to read a
candidate's capabilities from its framework object; this module turns that into routing options, so
the router only ranks capable candidates. Framework-neutral: nothing here imports LangChain or
LlamaIndex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from unirouter.exceptions import InvalidInputError

__all__ = ["CAPABILITIES", "capable_models", "restrict_to_capable"]

CAPABILITIES = ("tool_calling", "structured_output", "image_inputs")
"""Capability names a request can need (the names of LangChain's model-profile fields)."""


def capable_models(pool: Any, required: Iterable[str], capabilities_of: Callable[[Any], Iterable[str]], names: Iterable[str] | None = None) -> list[str]:
    """The candidates of ``pool`` (or of ``names``) whose capabilities include every ``required`` one."""
    need = set(required)
    out = []
    for name in pool.names if names is None else names:
        if need <= set(capabilities_of(pool.get(name).model)):
            out.append(name)
    return out


def restrict_to_capable(pool: Any, options: Any, required: Iterable[str], capabilities_of: Callable[[Any], Iterable[str]]) -> Any:
    """``options`` (a ``RoutingOptions``) with ``allowed_models`` cut to the capable candidates.

    Raises:
        InvalidInputError: ``force_model`` lacks a required capability, or no candidate has them all.
    """
    need = sorted(set(required))
    if not need:
        return options
    unknown = [c for c in need if c not in CAPABILITIES]
    if unknown:
        msg = f"unknown capabilities {unknown}; known: {list(CAPABILITIES)}."
        raise InvalidInputError(msg)
    names = list(options.allowed_models) if options.allowed_models is not None else pool.names
    names = [n for n in names if n in pool.names]
    capable = capable_models(pool, need, capabilities_of, names)
    if options.force_model is not None and options.force_model not in capable_models(pool, need, capabilities_of, [options.force_model]):
        msg = f"force_model={options.force_model!r} cannot serve this request: it needs {need}."
        raise InvalidInputError(msg)
    if not capable:
        msg = (
            f"this request needs {need}, which none of the candidates {names} has. Add a capable model, "
            "or declare the capability in the model's profile."
        )
        raise InvalidInputError(msg)
    return options.merged({"allowed_models": capable})
