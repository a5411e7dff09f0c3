"""Conversion between LangChain objects and the framework-neutral :mod:`unirouter.integration` layer.

Everything here is plumbing: LangChain inputs to messages and to the routing text, a chat model to the
core profiler's ``async (prompt) -> (text, usage)`` call, ``config["configurable"]`` to routing options,
and a decision to the metadata and callback event the plugin reports. No routing math lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    CallbackManager,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from unirouter import InvalidInputError
from unirouter.integration import CONFIG_KEYS, CandidatePool, RoutingOptions
from unirouter.routing_text import routing_text as _core_routing_text

__all__ = [
    "CONFIG_NAMESPACE",
    "DECISION_EVENT",
    "DECISION_KEY",
    "PROFILING_TAG",
    "RoutingInput",
    "build_pool",
    "call_options",
    "decide_ahead",
    "decision_record",
    "profiling_call",
    "routing_text",
    "to_messages",
]

PROFILING_TAG = "unirouter:profiling"
"""Tag on every profiling call, so profiling runs are easy to filter out of traces."""
DECISION_EVENT = "unirouter_decision"
"""Name of the custom callback event that carries each routing decision."""
DECISION_KEY = "__unirouter_decision"
"""``configurable`` slot for a decision made ahead of the call (by ``batch``); never passed on."""
CONFIG_NAMESPACE = "unirouter"
"""``config["configurable"]["unirouter"]`` holds per-call routing options (flat keys: ``unirouter_<option>``)."""

RoutingInput = Literal["contextual", "last_user", "user_turns", "conversation"] | Callable[[list[BaseMessage]], str]
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}


# -- inputs ------------------------------------------------------------------------------------
def to_messages(value: Any) -> list[BaseMessage]:
    """Messages from any chat-model input: a string, a ``PromptValue`` or a list of message-likes."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    msg = f"input must be a string, a PromptValue or a list of messages. Got {type(value).__name__}."
    raise InvalidInputError(msg)


def _text(message: BaseMessage) -> str:
    """The text parts of a message (images, audio and other non-text blocks are skipped)."""
    return message.text.strip()


def routing_text(messages: Sequence[BaseMessage], how: RoutingInput = "contextual") -> str:
    """The text the router embeds for a conversation (chosen by :func:`unirouter.routing_text.routing_text`).

    Args:
        messages: The conversation.
        how: ``"contextual"`` (default): the latest user message (a RAG template reduced to its
            query), with the earlier user turns before it when it is a short follow-up;
            ``"last_user"``: the latest user message that has text; ``"user_turns"``: every user
            message; ``"conversation"``: every message with text, one ``role: text`` line each; or
            a callable ``(messages) -> str``.

    Raises:
        InvalidInputError: The input holds no text to route on.
    """
    if callable(how):
        text = how(list(messages))
        if not isinstance(text, str) or not text.strip():
            msg = f"the routing_input callable must return a non-empty string. Got {text!r}."
            raise InvalidInputError(msg)
        return text
    # "conversation" keeps LangChain's own role names (human/ai/tool) in its "role: text" lines
    roles = (lambda t: t) if how == "conversation" else (lambda t: _ROLES.get(t, t))
    return _core_routing_text([(roles(m.type), _text(m)) for m in messages], how)


def sent_text(messages: Sequence[BaseMessage]) -> str:
    """Every text part of the messages sent, for pricing the input tokens of the call."""
    return "\n".join(t for m in messages if (t := _text(m)))


def result_usage(output: Any) -> tuple[dict[str, int] | None, str | None]:
    """``(usage, text)`` of a model's answer, for the realised cost of the call."""
    if isinstance(output, BaseMessage):
        return usage_of(output), output.text
    return None, None


def call_options(configurable: Mapping[str, Any] | None, override: Any = None) -> dict[str, Any]:
    """Per-call routing options from ``config["configurable"]`` and an explicit override.

    ``configurable["unirouter"]`` is a mapping of :data:`unirouter.integration.CONFIG_KEYS`; a flat
    ``configurable["unirouter_<key>"]`` sets one key. ``override`` (the ``unirouter=`` call argument)
    wins over both. Values are validated later by :meth:`RoutingOptions.parse` (typed errors).
    """
    out: dict[str, Any] = {}
    configurable = configurable or {}
    nested = configurable.get(CONFIG_NAMESPACE)
    if nested is not None:
        if isinstance(nested, RoutingOptions):
            nested = nested.model_dump(exclude_unset=True)
        if not isinstance(nested, Mapping):
            msg = f"config['configurable'][{CONFIG_NAMESPACE!r}] must be a mapping of {list(CONFIG_KEYS)}. Got {type(nested).__name__}."
            raise InvalidInputError(msg)
        out.update(nested)
    prefix = f"{CONFIG_NAMESPACE}_"
    for key, value in configurable.items():
        if key.startswith(prefix) and not key.startswith("__"):
            name = key[len(prefix) :]
            if name not in CONFIG_KEYS:
                msg = f"unknown configurable key {key!r}; valid keys: {[prefix + k for k in CONFIG_KEYS]}."
                raise InvalidInputError(msg)
            out[name] = value
    if "thread_id" in configurable and "session" not in out:  # a LangGraph thread is a session (sticky routing)
        out["session"] = str(configurable["thread_id"])
    if override is not None:
        if isinstance(override, RoutingOptions):
            override = override.model_dump(exclude_unset=True)
        if not isinstance(override, Mapping):
            msg = f"unirouter= must be a mapping of {list(CONFIG_KEYS)}. Got {type(override).__name__}."
            raise InvalidInputError(msg)
        out.update(override)
    return out


def decide_ahead(
    pool: CandidatePool, routing_input: RoutingInput, inputs: Sequence[Any], configs: list[Any], override: Any
) -> list[Any]:
    """``configs`` carrying decisions made with one embedding call per distinct set of options.

    Inputs whose text or options are invalid keep their config: their own call raises the error, so
    ``batch(..., return_exceptions=True)`` reports it for that input only.
    """
    groups: dict[str, list[tuple[int, str, str]]] = {}
    options: dict[str, RoutingOptions] = {}
    for i, (value, config) in enumerate(zip(inputs, configs)):
        try:
            opts = pool.resolve(call_options(config.get("configurable"), override))
            messages = to_messages(value)
            text = routing_text(messages, routing_input)
        except Exception:  # noqa: BLE001, S112 - re-raised by this input's own call
            continue
        key = opts.model_dump_json()
        options[key] = opts
        groups.setdefault(key, []).append((i, text, sent_text(messages)))
    out = list(configs)
    for key, items in groups.items():
        decisions = pool.decide_batch([t for _, t, _ in items], options[key], sent=[s for _, _, s in items])
        for (i, _, _), decision in zip(items, decisions):
            out[i] = {**out[i], "configurable": {**(out[i].get("configurable") or {}), DECISION_KEY: decision}}
    return out


# -- models ------------------------------------------------------------------------------------
def usage_of(message: Any) -> dict[str, int] | None:
    """``{"input_tokens", "output_tokens"}`` from ``AIMessage.usage_metadata`` (None when absent)."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return {"input_tokens": int(usage.get("input_tokens", 0)), "output_tokens": int(usage.get("output_tokens", 0))}


def profiling_call(model: BaseChatModel) -> Callable[[str], Any]:
    """The core profiler's call for a chat model: ``async (prompt) -> (text, usage or None)``.

    Each call is one ``ainvoke`` tagged ``unirouter:profiling`` (run name ``unirouter-profile``), so
    profiling runs are easy to filter out of traces. Concurrency, timeouts, retries (of errors with
    ``is_retryable``, e.g. LangChain's ``ModelRateLimitError``) and the response cache are the core
    profiler's, which is why this is a per-prompt call rather than ``abatch(max_concurrency=...)``.
    """

    async def call(prompt: str) -> tuple[str, dict[str, int] | None]:
        message = await model.ainvoke(prompt, config={"tags": [PROFILING_TAG], "run_name": "unirouter-profile"})
        return message.text, usage_of(message)

    return call


def build_pool(
    router: Any,
    models: Mapping[str, BaseChatModel] | None,
    *,
    costs: Mapping[str, Any] | None = None,
    scorer: Any = None,
    validation_set: Any = None,
    cache: Any = None,
    options: RoutingOptions | Mapping[str, Any] | None = None,
    profile_kwargs: Mapping[str, Any] | None = None,
) -> CandidatePool:
    """A :class:`CandidatePool` holding ``models``, profiling those the router has no profile for."""
    if router is None:
        msg = "a fitted router is needed (router=UniRouter(...).fit(...)), or pool= / load(path, models=...)."
        raise InvalidInputError(msg)
    pool = CandidatePool(
        router, scorer=scorer, validation_set=validation_set, cache=cache, defaults=options, profile_kwargs=profile_kwargs
    )
    costs = dict(costs or {})
    unknown = sorted(set(costs) - set(models or {}))
    if unknown:
        msg = f"costs= names models that are not in models=: {unknown}."
        raise InvalidInputError(msg)
    for name, model in (models or {}).items():
        add_model(pool, name, model, cost=costs.get(name))
    return pool


def _check_model(name: str, model: Any) -> None:
    if not isinstance(model, BaseChatModel):
        msg = f"model {name!r} must be a LangChain chat model (BaseChatModel). Got {type(model).__name__}."
        raise InvalidInputError(msg)


def add_model(pool: CandidatePool, name: str, model: Any, *, cost: Any = None, replace: bool = False) -> Any:
    _check_model(name, model)
    return pool.add(name, model, profiling_call(model), cost=cost, replace=replace)


async def aadd_model(pool: CandidatePool, name: str, model: Any, *, cost: Any = None, replace: bool = False) -> Any:
    _check_model(name, model)
    return await pool.aadd(name, model, profiling_call(model), cost=cost, replace=replace)


# -- callbacks ---------------------------------------------------------------------------------
def child_callbacks(parent: Any, tag: str | None = None, *, is_async: bool = False) -> Any:
    """A callback manager for a child of the run ``parent`` (what ``ParentRunManager.get_child`` does).

    ``parent`` is a run manager (LLM run managers have no ``get_child``), or ``None`` (no callbacks).
    """
    if parent is None:
        return None
    cls = AsyncCallbackManager if is_async else CallbackManager
    manager = cls(handlers=[], parent_run_id=parent.run_id)
    manager.set_handlers(parent.inheritable_handlers)
    manager.add_tags(parent.inheritable_tags)
    manager.add_metadata(parent.inheritable_metadata)
    if tag is not None:
        manager.add_tags([tag], inherit=False)
    return manager


# -- reporting ---------------------------------------------------------------------------------
def decision_record(decision: Any, attempts: list[dict[str, Any]], *, usage: dict[str, int] | None = None) -> dict[str, Any]:
    """The JSON-ready record stored in ``response_metadata["unirouter"]`` and sent as the event."""
    ok = next((a for a in attempts if a.get("ok")), {})
    record = {**decision.to_dict(), "answered_by": ok.get("model"), "attempts": attempts}
    record.update(getattr(attempts, "settled", None) or {})  # realised cost and budget state (issue 17)
    if usage is not None:
        record["usage"] = usage
    return record


def with_record(output: Any, record: dict[str, Any], *, move_usage: bool = False) -> Any:
    """``output`` with the record in ``response_metadata["unirouter"]`` (messages only).

    With ``move_usage`` the token usage moves from ``usage_metadata`` into the record, so a run
    nested around the chosen model's own run does not report the same tokens twice.
    """
    if not isinstance(output, BaseMessage):
        return output
    update: dict[str, Any] = {"response_metadata": {**output.response_metadata, CONFIG_NAMESPACE: record}}
    if move_usage and isinstance(output, AIMessage) and output.usage_metadata:
        record["usage"] = dict(output.usage_metadata)
        update["usage_metadata"] = None
    return output.model_copy(update=update)


def emit(record: dict[str, Any], config: Any) -> None:
    """Send the decision as the ``unirouter_decision`` custom event (no-op outside a run)."""
    try:
        dispatch_custom_event(DECISION_EVENT, record, config=config)
    except RuntimeError:  # no parent run: nobody is listening
        pass


async def aemit(record: dict[str, Any], config: Any) -> None:
    try:
        await adispatch_custom_event(DECISION_EVENT, record, config=config)
    except RuntimeError:
        pass


class PoolMethods:
    """Model management shared by :class:`UniRouteRunnable` and :class:`UniRouteChatModel`.

    The host class declares a ``pool: CandidatePool`` field; everything else is delegated to it.
    """

    pool: CandidatePool

    def __init__(
        self,
        router: Any = None,
        models: Mapping[str, BaseChatModel] | None = None,
        *,
        costs: Mapping[str, Any] | None = None,
        scorer: Any = None,
        validation_set: Any = None,
        response_cache: Any = None,
        options: RoutingOptions | Mapping[str, Any] | None = None,
        profile_kwargs: Mapping[str, Any] | None = None,
        pool: CandidatePool | None = None,
        **kwargs: Any,
    ) -> None:
        if pool is None:
            pool = build_pool(
                router,
                models,
                costs=costs,
                scorer=scorer,
                validation_set=validation_set,
                cache=response_cache,
                options=options,
                profile_kwargs=profile_kwargs,
            )
        super().__init__(pool=pool, **kwargs)  # the pydantic host class

    @property
    def models(self) -> dict[str, BaseChatModel]:
        """The candidate chat models by name, in the order they were added."""
        return {name: self.pool.get(name).model for name in self.pool.names}

    def get_model(self, name: str) -> BaseChatModel:
        """The chat model registered under ``name``."""
        return self.pool.get(name).model

    def add_model(self, name: str, model: BaseChatModel, *, cost: Any = None, replace: bool = False) -> Any:
        """Add a chat model; it is profiled on the validation set unless the router has its profile.

        Args:
            name: The candidate's name (its profile's name in the router).
            model: Any LangChain chat model.
            cost: Cost per query in USD, or a ``unirouter.profiler.TokenPrice`` (per-token prices
                applied to the ``usage_metadata`` of each profiling answer).
            replace: Re-profile and replace an existing candidate of that name.

        Returns:
            The model's ``ModelProfile``.

        Raises:
            ProfilingError: Too many profiling calls failed; nothing is registered.
            DuplicateModelError: ``name`` is taken and ``replace`` is false.
        """
        return add_model(self.pool, name, model, cost=cost, replace=replace)

    async def aadd_model(self, name: str, model: BaseChatModel, *, cost: Any = None, replace: bool = False) -> Any:
        """Async :meth:`add_model`: profiling awaits the model's ``ainvoke`` on the event loop."""
        return await aadd_model(self.pool, name, model, cost=cost, replace=replace)

    def remove_model(self, name: str) -> None:
        """Remove a candidate and its profile. Nothing is refitted."""
        self.pool.remove(name)

    def save(self, path: Any, *, overwrite: bool = False) -> None:
        """Save the router, the profiles and the candidate table (names, costs, default options).

        Chat models are not saved: :meth:`load` re-attaches them by name, without re-profiling.
        """
        self.pool.save(path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: Any,
        *,
        models: Mapping[str, BaseChatModel],
        scorer: Any = None,
        embedder: Any = None,
        response_cache: Any = None,
        profile_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load a saved router and re-attach its chat models by name (no re-profiling).

        Args:
            path: A directory written by :meth:`save`.
            models: ``{name: chat_model}`` for every saved candidate. Add new models afterwards
                with :meth:`add_model`.
            scorer: Needed only to profile models added later.
            embedder: The embedder the router was fitted with (default: the saved one).
            **kwargs: Other constructor arguments (``routing_input``, ...).
        """
        for name, model in models.items():
            _check_model(name, model)
        pool = CandidatePool.load(
            path,
            models=models,
            calls={name: profiling_call(model) for name, model in models.items()},
            embedder=embedder,
            scorer=scorer,
            cache=response_cache,
            profile_kwargs=profile_kwargs,
        )
        return cls(pool=pool, **kwargs)
