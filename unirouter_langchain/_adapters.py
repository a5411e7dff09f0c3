"""Conversion between LangChain objects and the framework-neutral :mod:`unirouter.integration` layer.

Everything here is plumbing: LangChain inputs to messages and to the routing text, a chat model to the
core profiler's ``async (prompt) -> (text, usage)`` call, ``config["configurable"]`` to routing options,
and a decision to the metadata and callback event the plugin reports. No routing math lives here.
"""

from __future__ import annotations

import functools
import time
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
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from unirouter import InvalidInputError
from unirouter.integration import CONFIG_KEYS, CandidatePool, RoutingOptions
from unirouter.integration.routing_text import routing_text as _core_routing_text

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
SECONDS_KEY = "__unirouter_seconds"
"""``configurable`` slot for the time that decision took (its share of a batch), for the savings ledger."""
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
    """The text the router embeds for a conversation (chosen by :func:`unirouter.integration.routing_text.routing_text`).

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
    """``(usage, text)`` of a model's answer (a message, or the ``ChatResult`` of a chat model's
    ``_generate``), for the realised cost of the call."""
    if isinstance(output, ChatResult) and output.generations:
        output = output.generations[0].message
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
    pool: CandidatePool,
    routing_input: RoutingInput,
    inputs: Sequence[Any],
    configs: list[Any],
    override: Any,
    needs: Callable[[Any], set[str]] | None = None,
) -> list[Any]:
    """``configs`` carrying the decisions the inputs would get one by one, made with one embedding call.

    The decisions are made in input order, as :meth:`CandidatePool.decide_batch` makes them: an input
    of a thread (``thread_id``, ``session``) is sticky to the model chosen for the thread's earlier
    inputs, and a paced budget or top share steps after each input. Inputs whose text or options are
    invalid keep their config: their own call raises the error, so ``batch(...,
    return_exceptions=True)`` reports it for that input only. ``needs(input)`` names the
    capabilities an input requires (only capable candidates are ranked for it).
    """
    items: list[tuple[int, str, str, RoutingOptions]] = []
    checked: dict[str, bool] = {}
    for i, (value, config) in enumerate(zip(inputs, configs)):
        try:
            opts = pool.resolve(call_options(config.get("configurable"), override))
            messages = to_messages(value)
            if needs is not None:
                opts = restrict(pool, opts, needs(value), capabilities)
            text = routing_text(messages, routing_input)
        except Exception:  # noqa: BLE001, S112 - re-raised by this input's own call
            continue
        key = opts.model_dump_json()
        if key not in checked:
            try:
                pool.check_options(opts)
                checked[key] = True
            except Exception:  # noqa: BLE001 - re-raised by this input's own call
                checked[key] = False
        if checked[key]:
            items.append((i, text, sent_text(messages), opts))
    out = list(configs)
    if not items:
        return out
    started = time.perf_counter()
    decisions = pool.decide_batch([t for _, t, _, _ in items], [o for _, _, _, o in items], sent=[s for _, _, s, _ in items])
    share = (time.perf_counter() - started) / len(items)
    for (i, _, _, _), decision in zip(items, decisions):
        extra = {DECISION_KEY: decision, SECONDS_KEY: share}
        out[i] = {**out[i], "configurable": {**(out[i].get("configurable") or {}), **extra}}
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
    A ``functools.partial`` of a module function (not a closure), so pools pickle.
    """
    return functools.partial(_profile_once, model)


async def _profile_once(model: BaseChatModel, prompt: str) -> tuple[str, dict[str, int] | None]:
    message = await model.ainvoke(prompt, config={"tags": [PROFILING_TAG], "run_name": "unirouter-profile"})
    return message.text, usage_of(message)


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


def resolve_chat_model(name: str, model: Any) -> Any:
    """A chat model from a chat model or a provider string (``"openai:gpt-4o-mini"``)."""
    if not isinstance(model, str):
        return model
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(model)
    except ImportError as e:
        msg = f"model {name!r} = {model!r} needs its provider's LangChain package: {e}"
        raise InvalidInputError(msg) from e
    except ValueError as e:
        msg = f"model {name!r} = {model!r} is not a provider string LangChain knows ('provider:model'): {e}"
        raise InvalidInputError(msg) from e


def _check_model(name: str, model: Any) -> None:
    if not isinstance(model, BaseChatModel):
        msg = f"model {name!r} must be a LangChain chat model (BaseChatModel). Got {type(model).__name__}."
        raise InvalidInputError(msg)


def add_model(pool: CandidatePool, name: str, model: Any, *, cost: Any = None, replace: bool = False) -> Any:
    """Check that ``model`` is a chat model, then add it to ``pool`` (profiling it if needed)."""
    _check_model(name, model)
    return pool.add(name, model, profiling_call(model), cost=cost, replace=replace)


async def aadd_model(pool: CandidatePool, name: str, model: Any, *, cost: Any = None, replace: bool = False) -> Any:
    """Async :func:`add_model`."""
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


def with_record(output: Any, record: dict[str, Any]) -> Any:
    """``output`` with the record in ``response_metadata["unirouter"]`` (messages, and the raw
    message of ``with_structured_output(..., include_raw=True)`` outputs)."""
    if isinstance(output, Mapping) and isinstance(output.get("raw"), BaseMessage):  # include_raw=True
        return {**output, "raw": with_record(output["raw"], record)}
    if not isinstance(output, BaseMessage):
        return output
    update: dict[str, Any] = {"response_metadata": {**output.response_metadata, CONFIG_NAMESPACE: record}}
    return output.model_copy(update=update)


def emit(record: dict[str, Any], config: Any) -> None:
    """Send the decision as the ``unirouter_decision`` custom event (no-op outside a run)."""
    try:
        dispatch_custom_event(DECISION_EVENT, record, config=config)
    except RuntimeError:  # no parent run: nobody is listening
        pass


async def aemit(record: dict[str, Any], config: Any) -> None:
    """Async :func:`emit`."""
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
            cost: Cost per query in USD, or a ``unirouter.profiling.profiler.TokenPrice`` (per-token prices
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

    @classmethod
    def from_pretrained(
        cls,
        models: Mapping[str, BaseChatModel | str],
        *,
        costs: Mapping[str, Any] | None = None,
        method: str = "difficulty",
        max_profiling_cost: float | None = None,
        scorer: Any = None,
        response_cache: Any = "default",
        options: RoutingOptions | Mapping[str, Any] | None = None,
        profile_kwargs: Mapping[str, Any] | None = None,
        embedder: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Route among your chat models with the bundled pre-trained router (offline, no dataset).

        Models whose name the bundle knows (e.g. ``"gpt-4o-2024-05-13"``) use their stored profile;
        every other model is profiled now on the bundled validation set (about 500 prompts, each
        graded by its own scorer), with the estimated number of calls and cost printed first.

        Args:
            models: ``{name: chat_model}``; a value may be a provider string such as
                ``"openai:gpt-4o-mini"``, resolved with LangChain's ``init_chat_model``.
            costs: ``{name: cost}``; USD per query or a ``unirouter.TokenPrice``. Needed for models
                the bundle does not know; re-prices a known one.
            method: ``"difficulty"`` (default: the only pre-trained router that beat ZeroRouter on
                both datasets it had never seen, see ``benchmarks/RESULTS.md``), ``"kmeans"`` or
                ``"learned"``.
            max_profiling_cost: Refuse (``unirouter.ProfilingCostError``, before any call) to
                profile a model whose estimated cost is above this.
            scorer: Defaults to the bundled per-prompt scorer.
            response_cache: Where profiling answers are kept (an interrupted run resumes): a
                ``unirouter.ResponseCache`` or path; ``"default"`` = ``~/.cache/unirouter/responses``;
                ``None`` = no cache.
            **kwargs: Other constructor arguments (``routing_input``, ...).
        """
        from unirouter.embedding.embedders import default_cache_dir
        from unirouter.pretrained import router_for
        from unirouter.pretrained import scorer as bundled_scorer

        resolved = {name: resolve_chat_model(name, model) for name, model in dict(models).items()}
        router = router_for(resolved, costs=costs, method=method, embedder=embedder)
        pk = dict(profile_kwargs or {})
        if max_profiling_cost is not None:
            pk["max_profiling_cost"] = max_profiling_cost
        if isinstance(response_cache, str) and response_cache == "default":
            response_cache = default_cache_dir() / "responses"
        return cls(
            router,
            resolved,
            costs=costs,
            scorer=scorer if scorer is not None else bundled_scorer(),
            response_cache=response_cache,
            options=options,
            profile_kwargs=pk,
            **kwargs,
        )


# -- running the chosen model inside the router's own run ---------------------------------------
def run_metadata(decision: Any) -> dict[str, Any]:
    """Run metadata describing a decision (kept by every tracer, LangSmith's included)."""
    return {"unirouter_model": decision.model, "unirouter_decision": decision.to_dict()}


def has_images(messages: Sequence[BaseMessage]) -> bool:
    """Whether any message carries an image part (OpenAI ``image_url`` or standard ``image`` blocks)."""
    for m in messages:
        if isinstance(m.content, list):
            for part in m.content:
                if isinstance(part, Mapping) and part.get("type") in ("image_url", "image", "input_image"):
                    return True
    return False


def capabilities(model: Any) -> set[str]:
    """What a candidate can serve: ``tool_calling``, ``structured_output``, ``image_inputs``.

    Read from the model's LangChain ``profile`` (``model.profile = {"tool_calling": False, ...}``
    declares it) and, where the profile is silent, from its class: a chat model that does not
    override ``bind_tools`` cannot call tools. Image support is assumed unless the profile
    says otherwise (few fakes and wrappers carry a profile).
    """
    profile = dict(getattr(model, "profile", None) or {})
    tools = profile["tool_calling"] if "tool_calling" in profile else type(model).bind_tools is not BaseChatModel.bind_tools
    if "structured_output" in profile:
        structured = profile["structured_output"]
    else:
        structured = tools or type(model).with_structured_output is not BaseChatModel.with_structured_output
    caps = {"text_inputs"}
    if tools:
        caps.add("tool_calling")
    if structured:
        caps.add("structured_output")
    if profile.get("image_inputs", True):
        caps.add("image_inputs")
    return caps


def restrict(pool: CandidatePool, options: RoutingOptions, needs: set[str], capabilities_of: Callable[[Any], set[str]]) -> RoutingOptions:
    """``options`` limited to the candidates that have every capability in ``needs``."""
    from unirouter.integration.capabilities import restrict_to_capable

    return restrict_to_capable(pool, options, needs, capabilities_of)


def as_chunk(message: BaseMessage) -> Any:
    """A whole ``AIMessage`` as one ``AIMessageChunk`` (for models that do not stream)."""
    import json

    from langchain_core.messages import AIMessageChunk
    from langchain_core.messages.tool import tool_call_chunk

    if isinstance(message, AIMessageChunk):
        return message
    calls = getattr(message, "tool_calls", None) or []
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i) for i, c in enumerate(calls)
        ],
    )


def direct_target(model: Any, tools: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(model, call arguments) for the chosen model, with tools bound the model's own way.

    ``bind_tools`` usually returns a ``RunnableBinding`` over the model: its arguments are merged
    into the call so the model can still be run inside the router's run (no nested run).
    """
    from langchain_core.runnables import RunnableBinding

    if tools is None:
        return model, dict(kwargs)
    spec = dict(tools)
    bound = model.bind_tools(spec.pop("tools"), **spec)
    if isinstance(bound, RunnableBinding) and isinstance(bound.bound, BaseChatModel):
        return bound.bound, {**bound.kwargs, **kwargs}
    return bound, dict(kwargs)


def run_generate(model: Any, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
    """The chosen model's ``ChatResult``, computed inside the router's run.

    ``_generate_with_cache`` is what the model's own ``invoke`` runs once its run has started
    (its cache and rate limiter included); calling it directly means no second chat-model run,
    so tokens are streamed and counted once. A bound non-chat-model runnable is invoked.
    """
    kwargs = dict(kwargs)
    if isinstance(model, BaseChatModel):
        stop = kwargs.pop("stop", None)
        return model._generate_with_cache(messages, stop=stop, run_manager=None, **kwargs)
    return ChatResult(generations=[ChatGeneration(message=model.invoke(messages, **kwargs))])


async def arun_generate(model: Any, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
    """Async :func:`run_generate`."""
    kwargs = dict(kwargs)
    if isinstance(model, BaseChatModel):
        stop = kwargs.pop("stop", None)
        return await model._agenerate_with_cache(messages, stop=stop, run_manager=None, **kwargs)
    return ChatResult(generations=[ChatGeneration(message=await model.ainvoke(messages, **kwargs))])


def run_stream(model: Any, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
    """The chosen model's ``ChatGenerationChunk`` stream, inside the router's run.

    Models that cannot stream (or have streaming disabled) yield their whole answer once.
    """
    kwargs = dict(kwargs)
    if isinstance(model, BaseChatModel) and model._should_stream(async_api=False, stream=True, **kwargs):
        stop = kwargs.pop("stop", None)
        if model.rate_limiter:
            model.rate_limiter.acquire(blocking=True)
        yield from model._stream(messages, stop=stop, **kwargs)
        return
    result = run_generate(model, messages, kwargs)
    yield ChatGenerationChunk(message=as_chunk(result.generations[0].message))


async def arun_stream(model: Any, messages: list[BaseMessage], kwargs: dict[str, Any]) -> Any:
    """Async :func:`run_stream`."""
    kwargs = dict(kwargs)
    if isinstance(model, BaseChatModel) and model._should_stream(async_api=True, stream=True, **kwargs):
        stop = kwargs.pop("stop", None)
        if model.rate_limiter:
            await model.rate_limiter.aacquire(blocking=True)
        async for chunk in model._astream(messages, stop=stop, **kwargs):
            yield chunk
        return
    result = await arun_generate(model, messages, kwargs)
    yield ChatGenerationChunk(message=as_chunk(result.generations[0].message))


def finish_result(result: Any, record: dict[str, Any]) -> Any:
    """``result`` with the record in the message's ``response_metadata`` and in ``llm_output``.

    Usage stays in ``usage_metadata``: the router's run is the only chat-model run of the call.
    """
    generations = []
    for g in result.generations:
        message = with_record(g.message, record)
        generations.append(g.model_copy(update={"message": message}))
    llm_output = {**(result.llm_output or {}), CONFIG_NAMESPACE: record}
    return ChatResult(generations=generations, llm_output=llm_output)


def account(pool: CandidatePool, decision: Any, record: dict[str, Any], usage: Any, seconds: float | None) -> None:
    """Book the call in ``pool.savings`` (a ``unirouter.integration.savings.SavingsLedger``), if one is attached,
    and put the entry in the record (so the decision event and metadata carry it)."""
    from unirouter.integration.savings import book_call

    entry = book_call(pool, decision, answered_by=record.get("answered_by"), usage=usage, routing_seconds=seconds)
    if entry is not None:
        record["savings"] = entry


