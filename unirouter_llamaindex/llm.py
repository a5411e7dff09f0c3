"""UniRouteLLM: a LlamaIndex LLM that sends each call to the best model for it (UniRoute)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from unirouter import InvalidInputError, ModelProfile, UniRouterWarning
from unirouter.integration import CONFIG_KEYS, CandidatePool, RoutingOptions

from unirouter_llamaindex import _adapters as ad

if TYPE_CHECKING:
    from llama_index.core.tools import BaseTool

__all__ = ["UniRouteFunctionCallingLLM", "UniRouteLLM"]


def _is_function_calling(llm: LLM) -> bool:
    return isinstance(llm, FunctionCallingLLM) and bool(llm.metadata.is_function_calling_model)


class UniRouteLLM(LLM):
    """A LlamaIndex LLM that routes every call to one of several named LLMs (UniRoute).

    Each call is embedded, the router predicts every candidate's error and cost on it, and the call
    goes to the model with the lowest ``error + cost_weight * cost``. If that model raises, the next
    best ones are tried (``max_fallbacks``). The decision is attached to every response (and every
    streamed chunk) as ``additional_kwargs["unirouter"]`` and emitted as a
    :class:`~unirouter_llamaindex.UniRouteDecisionEvent`. Like LlamaIndex's own wrapper LLMs, the
    public methods report LLM events to this object's callback manager (e.g. ``Settings``'), and the
    chosen model reports its own call to its own callback manager.

    A model is profiled once, on the router's validation prompts, when it is added (through the
    core profiler, with its concurrency limit, retries and response cache). Models the router already
    holds a profile for are not called. The object is a ``FunctionCallingLLM`` (its class is
    :class:`UniRouteFunctionCallingLLM`) while any candidate is one, so it works as
    ``Settings.llm``, in query engines and in a ``FunctionAgent``. Calls with tools
    (``chat_with_tools`` and its twins) only go to function-calling candidates; adding a model that
    cannot call functions next to ones that can says so at once (a ``UniRouterWarning``).

    Args:
        router: A fitted :class:`unirouter.UniRouter` (or pass ``pool=`` instead).
        models: Named candidate LLMs, profiled on construction unless the router has their profile.
        costs: Cost per query (USD) or ``unirouter.profiling.profiler.TokenPrice`` for each model in ``models``
            that must be profiled (a ``TokenPrice`` prices the usage each response reports).
        scorer: Grades profiling answers, e.g. ``unirouter.profiling.scorers.MultipleChoiceScorer()``.
        validation_set: Profiling prompts; defaults to the router's validation set.
        response_cache: A ``ResponseCache`` (or directory) so re-profiling a model costs no calls.
        options: Default routing options: ``cost_weight``, ``budget``, ``force_model``,
            ``allowed_models``, ``excluded_models``, ``max_fallbacks``. Any of them can be given per
            call as a keyword argument (``llm.chat(messages, cost_weight=0.0)``) or as
            ``unirouter={...}``; per-call values win and never reach the model.
        profile_kwargs: More profiler options (``max_concurrency``, ``timeout``, ``progress``, ...).
        pool: A ready :class:`unirouter.integration.CandidatePool` instead of the arguments above.
        routing_input: What the router embeds: ``"contextual"`` (default: the user's request; in a
            query engine its query, not the template with the retrieved context; a short follow-up
            with the question it follows), ``"last_user"``, ``"user_turns"``, ``"conversation"`` or
            a callable ``(messages) -> str``. ``complete`` routes on its prompt (or the engine's query).

    Examples:
        ```python
        from llama_index.core import Settings
        from unirouter.profiling.profiler import TokenPrice
        from unirouter.profiling.scorers import MultipleChoiceScorer
        from unirouter_llamaindex import UniRouteLLM

        llm = UniRouteLLM(
            router,
            {"mini": OpenAI(model="gpt-4o-mini"), "4o": OpenAI(model="gpt-4o")},
            costs={"mini": TokenPrice(input_per_mtok=0.15, output_per_mtok=0.6),
                   "4o": TokenPrice(input_per_mtok=2.5, output_per_mtok=10.0)},
            scorer=MultipleChoiceScorer(),
            options={"cost_weight": 50.0},
        )
        Settings.llm = llm
        response = llm.complete("Which gas makes up most of the air? (A) O2 (B) N2")
        response.additional_kwargs["unirouter"]["answered_by"]
        llm.complete(prompt, force_model="4o")          # per-call override
        llm.save("router_dir")
        llm = UniRouteLLM.load("router_dir", models={"mini": ..., "4o": ...})
        ```
    """

    routing_input: ad.RoutingInput = Field(
        default="contextual", exclude=True, description="What the router embeds for a chat (see the class docs)."
    )
    _pool: CandidatePool = PrivateAttr()

    def __init__(
        self,
        router: Any = None,
        models: Mapping[str, LLM] | None = None,
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
        super().__init__(**kwargs)
        if pool is None:
            if router is None:
                msg = "UniRouteLLM needs a fitted router (UniRouteLLM(router, models, ...)), pool=, or load(path, models=...)."
                raise InvalidInputError(msg)
            pool = CandidatePool(
                router,
                scorer=scorer,
                validation_set=validation_set,
                cache=response_cache,
                defaults=options,
                profile_kwargs=profile_kwargs,
            )
        elif router is not None or options is not None:
            msg = "give either router= (and options=) or pool= (which has its own router and defaults), not both."
            raise InvalidInputError(msg)
        self._pool = pool
        models = dict(models or {})
        unknown = sorted(set(costs or {}) - set(models))
        if unknown:
            msg = f"costs= names models that are not in models=: {unknown}."
            raise InvalidInputError(msg)
        for name, llm in models.items():
            self.add_model(name, llm, cost=(costs or {}).get(name))
        self._sync_class()

    @classmethod
    def from_pretrained(
        cls,
        models: Mapping[str, LLM],
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
    ) -> UniRouteLLM:
        """Route among your LLMs with the bundled pre-trained router (offline, no dataset).

        Known model names use their stored profiles; other models are profiled now on the bundled
        validation set (estimated calls and cost printed first; ``max_profiling_cost`` refuses with
        ``unirouter.ProfilingCostError`` before any call). ``response_cache="default"`` keeps the
        answers in ``~/.cache/unirouter/responses``. Same arguments as the LangChain
        ``UniRouteChatModel.from_pretrained``.
        """
        from unirouter.embedding.embedders import default_cache_dir
        from unirouter.pretrained import router_for
        from unirouter.pretrained import scorer as bundled_scorer

        router = router_for(dict(models), costs=costs, method=method, embedder=embedder)
        pk = dict(profile_kwargs or {})
        if max_profiling_cost is not None:
            pk["max_profiling_cost"] = max_profiling_cost
        if isinstance(response_cache, str) and response_cache == "default":
            response_cache = default_cache_dir() / "responses"
        return cls(
            router, dict(models), costs=costs, scorer=scorer if scorer is not None else bundled_scorer(), response_cache=response_cache, options=options,
            profile_kwargs=pk, **kwargs,
        )  # fmt: skip

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "UniRouteLLM"

    # -- the candidate pool --------------------------------------------------------------------
    @property
    def pool(self) -> CandidatePool:
        """The :class:`~unirouter.integration.CandidatePool` (router, candidates, default options)."""
        return self._pool

    @property
    def router(self) -> Any:
        """The fitted router behind the pool."""
        return self._pool.router

    @property
    def models(self) -> dict[str, LLM]:
        """The candidate LLMs by name, in the order they were added."""
        return {name: self._pool.get(name).model for name in self._pool.names}

    def get_model(self, name: str) -> LLM:
        """The LLM registered under ``name`` (:class:`unirouter.UnknownModelError` if none)."""
        return self._pool.get(name).model

    @staticmethod
    def _check_llm(name: str, llm: Any) -> None:
        if not isinstance(llm, LLM):
            msg = f"model {name!r} must be a llama_index.core.llms.LLM. Got {type(llm).__name__}."
            raise InvalidInputError(msg)

    def add_model(self, name: str, model: LLM, *, cost: Any = None, replace: bool = False) -> ModelProfile:
        """Add a candidate; profile it on the validation prompts unless the router has its profile.

        Args:
            name: The model's name in the router.
            model: The LlamaIndex LLM (profiled through ``achat`` with one user message per prompt).
            cost: Cost per query (USD) or a ``TokenPrice`` (needed when the model is profiled).
            replace: Re-profile and replace a model of the same name.

        Returns:
            The model's ``ModelProfile``.

        Raises:
            ProfilingError: Too many profiling calls failed; nothing is registered.
            DuplicateModelError: ``name`` is taken and ``replace`` is false.
        """
        self._check_llm(name, model)
        profile = self._pool.add(name, model, ad.profiling_call(model), cost=cost, replace=replace)
        self._sync_class()
        self._warn_mixed(name)
        return profile

    async def aadd_model(self, name: str, model: LLM, *, cost: Any = None, replace: bool = False) -> ModelProfile:
        """Async :meth:`add_model`: profiling awaits the model's ``achat`` on the running loop."""
        self._check_llm(name, model)
        profile = await self._pool.aadd(name, model, ad.profiling_call(model), cost=cost, replace=replace)
        self._sync_class()
        self._warn_mixed(name)
        return profile

    def _warn_mixed(self, added: str) -> None:
        """Say at add time (not when an agent runs) which candidates will never get tool calls."""
        names = self._pool.names
        fc = [n for n in names if _is_function_calling(self._pool.get(n).model)]
        plain = [n for n in names if n not in fc]
        if fc and plain and (added in plain or len(fc) == 1):
            msg = (
                f"candidates {plain} are not function-calling LLMs: calls with tools (chat_with_tools, "
                f"FunctionAgent) are routed among {fc} only."
            )
            warnings.warn(msg, UniRouterWarning, stacklevel=3)

    def remove_model(self, name: str) -> None:
        """Remove a candidate and its profile. Nothing is refitted."""
        self._pool.remove(name)
        self._sync_class()

    def _sync_class(self) -> None:
        """Be a FunctionCallingLLM while any candidate is one (isinstance and metadata agree).

        Calls with tools go only to the function-calling candidates, so a pool that mixes them
        works in a ``FunctionAgent``; the others still answer calls without tools.
        """
        names = self._pool.names
        fc = any(_is_function_calling(self._pool.get(n).model) for n in names)
        target = UniRouteFunctionCallingLLM if fc else UniRouteLLM
        if type(self) in (UniRouteLLM, UniRouteFunctionCallingLLM) and type(self) is not target:
            self.__class__ = target

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Save the router, the profiles and the candidate table (names, costs, default options).

        The LLMs are not saved: :meth:`load` re-attaches them by name, without re-profiling.
        """
        self._pool.save(path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        models: Mapping[str, LLM],
        scorer: Any = None,
        embedder: Any = None,
        response_cache: Any = None,
        profile_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> UniRouteLLM:
        """Load a saved UniRouteLLM and re-attach its LLMs by name (no re-profiling).

        Args:
            path: A directory written by :meth:`save`.
            models: ``{name: llm}`` for exactly the saved candidates; add new models afterwards
                with :meth:`add_model`.
            scorer: Needed only to profile models added later.
            embedder: The embedder the router was fitted with (default: the saved one).
            **kwargs: Other constructor arguments (``routing_input``, ``callback_manager``, ...).
        """
        for name, llm in models.items():
            cls._check_llm(name, llm)
        pool = CandidatePool.load(
            path,
            models=models,
            calls={n: ad.profiling_call(m) for n, m in models.items()},
            embedder=embedder,
            scorer=scorer,
            cache=response_cache,
            profile_kwargs=profile_kwargs,
        )
        return cls(pool=pool, **kwargs)

    # -- metadata --------------------------------------------------------------------------------
    @property
    def metadata(self) -> LLMMetadata:
        """The weakest candidate's limits: smallest context window and output, chat only if all;
        function calling if any candidate calls functions (tool calls are routed among those)."""
        metas = [m.metadata for m in self.models.values()]
        if not metas:
            return LLMMetadata(model_name="unirouter()")
        outputs = [m.num_output for m in metas if m.num_output > 0]
        return LLMMetadata(
            context_window=min(m.context_window for m in metas),
            num_output=min(outputs) if outputs else -1,
            is_chat_model=all(m.is_chat_model for m in metas),
            is_function_calling_model=isinstance(self, FunctionCallingLLM),
            model_name=f"unirouter({', '.join(self._pool.names)})",
        )

    # -- routing ---------------------------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any], tools: bool) -> tuple[RoutingOptions, dict[str, Any]]:
        """Split the routing options off the kwargs that go to the model; merge them with the defaults."""
        kwargs = dict(kwargs)
        override = kwargs.pop(ad.METADATA_KEY, None)
        if override is not None and not isinstance(override, (Mapping, RoutingOptions)):
            msg = f"unirouter= must be a mapping of {list(CONFIG_KEYS)}. Got {type(override).__name__}."
            raise InvalidInputError(msg)
        opts = self._pool.resolve(override).merged({k: kwargs.pop(k) for k in CONFIG_KEYS if k in kwargs})
        if tools:
            opts = self._function_calling_only(opts)
        return opts, kwargs

    def _function_calling_only(self, opts: RoutingOptions) -> RoutingOptions:
        names = opts.allowed_models if opts.allowed_models is not None else self._pool.names
        fc = [n for n in names if n in self._pool.names and _is_function_calling(self._pool.get(n).model)]
        if opts.force_model is not None and opts.force_model not in fc:
            msg = f"force_model={opts.force_model!r} cannot call tools: it is not a function-calling LLM."
            raise InvalidInputError(msg)
        if not fc:
            msg = f"a call with tools needs a function-calling candidate; none of {list(names)} is one."
            raise InvalidInputError(msg)
        return opts.merged({"allowed_models": fc})

    def _call(
        self, source: str, text: str, fn: Callable[[LLM, dict[str, Any]], Any], kwargs: dict[str, Any], *, tools: bool = False, sent: str | None = None
    ) -> Any:
        """Route ``text``, run ``fn(model, kwargs)`` on the chosen model (falling back), tag the result.

        ``sent`` is the whole prompt the model receives (priced for its input tokens; default ``text``).
        """
        opts, kwargs = self._options(kwargs, tools)
        started = time.perf_counter()
        decision = self._pool.decide(ad.require_text(text, f"UniRouteLLM.{source}"), opts, sent=sent)
        seconds = time.perf_counter() - started
        result, attempts = self._pool.run_with_fallbacks(
            decision, opts, lambda n: fn(self._pool.get(n).model, kwargs), usage_of=ad.response_usage, sent=sent or text
        )
        record = ad.decision_record(decision, attempts)
        ad.account(self._pool, decision, record, result, seconds)
        ad.emit(f"llm.{source}", record)
        return ad.tag(result, record)

    async def _acall(
        self, source: str, text: str, afn: Callable[[LLM, dict[str, Any]], Any], kwargs: dict[str, Any], *, tools: bool = False, sent: str | None = None
    ) -> Any:
        """Async :meth:`_call`: the embedding runs in a worker thread, ``afn`` is awaited."""
        opts, kwargs = self._options(kwargs, tools)
        started = time.perf_counter()
        decision = await self._pool.adecide(ad.require_text(text, f"UniRouteLLM.{source}"), opts, sent=sent)
        seconds = time.perf_counter() - started
        result, attempts = await self._pool.arun_with_fallbacks(
            decision, opts, lambda n: afn(self._pool.get(n).model, kwargs), usage_of=ad.response_usage, sent=sent or text
        )
        record = ad.decision_record(decision, attempts)
        ad.account(self._pool, decision, record, result, seconds)
        ad.emit(f"llm.{source}", record)
        return ad.tag(result, record)

    def _text(self, messages: Sequence[ChatMessage]) -> str:
        return ad.messages_to_text(messages, self.routing_input)

    def _prompt_text(self, prompt: str) -> str:
        """The routing text of a completion prompt: a query engine's query when this prompt was
        formatted from its template (``routing_input="contextual"``), else the prompt."""
        if self.routing_input == "contextual":
            return ad.query_for(prompt) or prompt
        return prompt

    # LLM.predict/stream/apredict/astream format a template, then call chat/complete: remember the
    # query the template was formatted with, so that call routes on the query (see _adapters).
    def _get_prompt(self, prompt: Any, **prompt_args: Any) -> str:
        formatted = super()._get_prompt(prompt, **prompt_args)
        ad.remember_query(formatted, prompt, prompt_args)
        return formatted

    def _get_messages(self, prompt: Any, **prompt_args: Any) -> list[ChatMessage]:
        messages = super()._get_messages(prompt, **prompt_args)
        for m in messages:
            if m.role.value == "user":
                ad.remember_query(ad.message_text(m), prompt, prompt_args)
        return messages

    def route(self, text: str, **options: Any) -> Any:
        """The :class:`~unirouter.RoutingDecision` for a text, without calling any model."""
        return self._pool.decide(ad.require_text(text, "UniRouteLLM.route"), options or None)

    # -- LLM interface: every method routes, then delegates to the chosen model --------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Route the conversation and return the chosen LLM's ``chat`` answer (decision in ``additional_kwargs``)."""
        return self._call("chat", self._text(messages), lambda m, kw: m.chat(messages, **kw), kwargs, sent=ad.sent_text(messages))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat` (the embedding runs in a worker thread)."""
        return await self._acall("achat", self._text(messages), lambda m, kw: m.achat(messages, **kw), kwargs, sent=ad.sent_text(messages))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Route, then stream the chosen LLM's chat (primed: a failure before the first chunk falls back)."""
        fn = lambda m, kw: ad.prime(m.stream_chat(messages, **kw))  # noqa: E731
        return self._call("stream_chat", self._text(messages), fn, kwargs, sent=ad.sent_text(messages))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        fn = lambda m, kw: ad.aprime(m.astream_chat(messages, **kw))  # noqa: E731
        return await self._acall("astream_chat", self._text(messages), fn, kwargs, sent=ad.sent_text(messages))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Route the prompt and return the chosen LLM's completion."""
        fn = lambda m, kw: m.complete(prompt, formatted=formatted, **kw)  # noqa: E731
        return self._call("complete", self._prompt_text(prompt), fn, kwargs, sent=prompt)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`."""
        fn = lambda m, kw: m.acomplete(prompt, formatted=formatted, **kw)  # noqa: E731
        return await self._acall("acomplete", self._prompt_text(prompt), fn, kwargs, sent=prompt)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Route, then stream the chosen LLM's completion (primed, so it can fall back)."""
        fn = lambda m, kw: ad.prime(m.stream_complete(prompt, formatted=formatted, **kw))  # noqa: E731
        return self._call("stream_complete", self._prompt_text(prompt), fn, kwargs, sent=prompt)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        fn = lambda m, kw: ad.aprime(m.astream_complete(prompt, formatted=formatted, **kw))  # noqa: E731
        return await self._acall("astream_complete", self._prompt_text(prompt), fn, kwargs, sent=prompt)

    # -- function calling: route among the function-calling candidates, delegate the whole call --
    def chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Route among the function-calling candidates, then delegate the whole tool call to the chosen one."""
        args = {"user_msg": user_msg, "chat_history": chat_history, "verbose": verbose,
                "allow_parallel_tool_calls": allow_parallel_tool_calls, "tool_required": tool_required}  # fmt: skip
        fn = lambda m, kw: m.chat_with_tools(tools, **args, **kw)  # noqa: E731
        return self._call("chat_with_tools", ad.tools_routing_text(user_msg, chat_history, self.routing_input), fn, kwargs, tools=True)

    async def achat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`chat_with_tools`."""
        args = {"user_msg": user_msg, "chat_history": chat_history, "verbose": verbose,
                "allow_parallel_tool_calls": allow_parallel_tool_calls, "tool_required": tool_required}  # fmt: skip
        fn = lambda m, kw: m.achat_with_tools(tools, **args, **kw)  # noqa: E731
        return await self._acall("achat_with_tools", ad.tools_routing_text(user_msg, chat_history, self.routing_input), fn, kwargs, tools=True)

    def stream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseGen:
        """Streaming :meth:`chat_with_tools`."""
        args = {"user_msg": user_msg, "chat_history": chat_history, "verbose": verbose,
                "allow_parallel_tool_calls": allow_parallel_tool_calls, "tool_required": tool_required}  # fmt: skip
        fn = lambda m, kw: ad.prime(m.stream_chat_with_tools(tools, **args, **kw))  # noqa: E731
        return self._call("stream_chat_with_tools", ad.tools_routing_text(user_msg, chat_history, self.routing_input), fn, kwargs, tools=True)

    async def astream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseAsyncGen:
        """Async streaming :meth:`chat_with_tools`."""
        args = {"user_msg": user_msg, "chat_history": chat_history, "verbose": verbose,
                "allow_parallel_tool_calls": allow_parallel_tool_calls, "tool_required": tool_required}  # fmt: skip
        fn = lambda m, kw: ad.aprime(m.astream_chat_with_tools(tools, **args, **kw))  # noqa: E731
        text = ad.tools_routing_text(user_msg, chat_history, self.routing_input)
        return await self._acall("astream_chat_with_tools", text, fn, kwargs, tools=True)

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Route now, let the chosen model format the tools, and pin the following ``chat`` to it."""
        opts, kwargs = self._options(kwargs, tools=True)
        decision = self._pool.decide(ad.require_text(ad.tools_routing_text(user_msg, chat_history, self.routing_input), "chat_with_tools"), opts)
        chosen = self._pool.get(decision.model).model
        prepared = chosen._prepare_chat_with_tools_compat(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )
        return {**prepared, "force_model": decision.model}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """Parsed by the model that wrote ``response`` (read from ``additional_kwargs["unirouter"]``)."""
        name = ad.answered_by(response)
        if name is None or name not in self._pool.names:  # a response from elsewhere
            fc = [n for n in self._pool.names if _is_function_calling(self._pool.get(n).model)]
            if not fc:
                msg = "no function-calling candidate can parse tool calls; add one with add_model(...)."
                raise InvalidInputError(msg)
            name = fc[0]
        model = self._pool.get(name).model
        return model.get_tool_calls_from_response(response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)


class UniRouteFunctionCallingLLM(UniRouteLLM, FunctionCallingLLM):
    """A :class:`UniRouteLLM` with at least one candidate that calls functions (tools).

    Never built directly: a ``UniRouteLLM`` takes this class while any candidate is a
    function-calling LLM; tool calls are routed among those. ``chat_with_tools`` and its async and streaming twins route on the user's
    message and hand the whole call, tools included, to the chosen model, which formats the tools its
    own way; ``get_tool_calls_from_response`` is answered by the model that wrote the response.
    """

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "UniRouteFunctionCallingLLM"
