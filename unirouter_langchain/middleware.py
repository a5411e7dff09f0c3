"""UniRoute in LangChain v1 agents: a decision model for ``ModelRouterMiddleware``, and a per-call
routing middleware.

``create_agent`` users pick models with middleware. langchain 1.5 ships ``ModelRouterMiddleware``,
which asks a ``BaseDecisionModel`` a ``Choice`` question once per agent run;
:class:`UniRouteDecisionModel` answers it with UniRoute (no LLM call, one embedding), and
:func:`model_router_middleware` builds the whole middleware from a pool. It composes with
``ModelFallbackMiddleware`` and ``ModelRetryMiddleware`` like any other router.

:class:`UniRouteMiddleware` routes at *every* model call instead (``wrap_model_call``), among the
candidates able to serve that call (tools bound -> tool-calling candidates only), which is what
the brief of a per-step router needs and what works on langchain versions without
``ModelRouterMiddleware``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import ConfigDict, Field
from unirouter import InvalidInputError
from unirouter.integration import CandidatePool

from unirouter_langchain._adapters import (
    DECISION_EVENT,
    RoutingInput,
    capabilities,
    has_images,
    restrict,
    routing_text,
    to_messages,
)

__all__ = ["UniRouteDecisionModel", "UniRouteMiddleware", "model_router_middleware"]

try:  # langchain >= 1.5
    from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
    from langchain_core.decisions import BaseDecisionModel, Choice, ChoiceAnswer, ClassifierResponse
except ImportError:  # pragma: no cover - older langchain: only UniRouteMiddleware is available
    ModelRouterMiddleware = None  # type: ignore[assignment,misc]
    BaseDecisionModel = object  # type: ignore[assignment,misc]


def _pool_of(source: Any) -> CandidatePool:
    pool = getattr(source, "pool", source)
    if not isinstance(pool, CandidatePool):
        msg = f"expected a UniRouteChatModel, UniRouteRunnable or CandidatePool. Got {type(source).__name__}."
        raise InvalidInputError(msg)
    return pool


def _state_text(state: Any, how: RoutingInput) -> str:
    """The routing text of a decision model's ``state`` (text, a message, messages, or a mapping
    with ``"messages"``)."""
    if isinstance(state, Mapping) and "messages" in state:
        state = state["messages"]
    if isinstance(state, str):
        return state
    return routing_text(to_messages(state if isinstance(state, Sequence) else [state]), how)


if ModelRouterMiddleware is not None:

    class UniRouteDecisionModel(BaseDecisionModel):
        """A LangChain decision model that answers ``Choice`` questions over model names with UniRoute.

        The labels of the ``Choice`` must be candidate names; the answer is the candidate with the
        lowest ``predicted error + cost_weight * expected cost`` for the state's routing text. The
        decision is deterministic, so the answer's probabilities are one-hot (``confidence=1``);
        the full decision (every candidate's predicted error and cost) is dispatched as the
        ``unirouter_decision`` event on the classifier's run.

        Args:
            pool: A ``CandidatePool`` (or a ``UniRouteChatModel``, via ``UniRouteDecisionModel.of``).
            routing_input: What is embedded when the state holds messages.
            required_capabilities: Only candidates with these capabilities are chosen (default
                ``("tool_calling",)``: an agent binds tools to the chosen model).
        """

        model_config = ConfigDict(arbitrary_types_allowed=True)

        model: str = "unirouter"
        pool: CandidatePool = Field(exclude=True)
        routing_input: RoutingInput = "last_user"
        required_capabilities: tuple[str, ...] = ("tool_calling",)

        @classmethod
        def of(cls, source: Any, **kwargs: Any) -> UniRouteDecisionModel:
            """The decision model over the pool of a UniRoute chat model or runnable."""
            return cls(pool=_pool_of(source), **kwargs)

        @property
        def _provider(self) -> str:
            return "unirouter"

        def _options(self, question: Any) -> Any:
            if not isinstance(question, Choice):
                msg = f"UniRouteDecisionModel answers Choice questions only. Got {type(question).__name__}."
                raise InvalidInputError(msg)
            labels = list(question.criteria)
            unknown = [label for label in labels if label not in self.pool.names]
            if unknown:
                msg = f"choice labels {unknown} are not candidates; name each choice after a candidate of {self.pool.names}."
                raise InvalidInputError(msg)
            options = self.pool.resolve({"allowed_models": labels})
            return labels, restrict(self.pool, options, set(self.required_capabilities), capabilities)

        @staticmethod
        def _answer(labels: list[str], decision: Any) -> ChoiceAnswer:
            return ChoiceAnswer(
                type="choice",
                choice=decision.model,
                probabilities={label: float(label == decision.model) for label in labels},
                confidence=1.0,
            )

        def _classify(self, state: Any, questions: dict[str, Any]) -> ClassifierResponse:
            text = _state_text(state, self.routing_input)
            answers = {}
            for key, question in questions.items():
                labels, options = self._options(question)
                decision = self.pool.decide(text, options)
                _emit(decision.to_dict())
                answers[key] = self._answer(labels, decision)
            return ClassifierResponse(model=self.model, answers=answers)

        async def _aclassify(self, state: Any, questions: dict[str, Any]) -> ClassifierResponse:
            text = _state_text(state, self.routing_input)
            answers = {}
            for key, question in questions.items():
                labels, options = self._options(question)
                decision = await self.pool.adecide(text, options)
                await _aemit(decision.to_dict())
                answers[key] = self._answer(labels, decision)
            return ClassifierResponse(model=self.model, answers=answers)

    def model_router_middleware(
        source: Any,
        *,
        criteria: Mapping[str, Any] | None = None,
        instructions: str = "Choose the candidate with the lowest predicted error plus cost weight times expected cost.",
        **kwargs: Any,
    ) -> ModelRouterMiddleware:
        """A ``ModelRouterMiddleware`` over the candidates of ``source``, answered by UniRoute.

        Args:
            source: A ``UniRouteChatModel``, ``UniRouteRunnable`` or ``CandidatePool``.
            criteria: Optional description per candidate (shown in traces); defaults to its profile
                (validation error and cost per query).
            instructions: The question's instructions (informational: UniRoute does not read them).
            **kwargs: Passed to :class:`UniRouteDecisionModel` (``routing_input``,
                ``required_capabilities``).

        ```python
        agent = create_agent(
            chat.get_model(chat.pool.names[0]), tools=[...],
            middleware=[model_router_middleware(chat), ModelFallbackMiddleware(backup), ModelRetryMiddleware()],
        )
        ```
        """
        pool = _pool_of(source)
        criteria = dict(criteria or {})
        choices = {}
        for name in pool.names:
            text = criteria.get(name)
            if text is None:
                profile = pool.router.get_profile(name)
                text = f"validation error {profile.global_error:.3f}, cost per query {profile.cost_per_query:.3g}"
            choices[name] = ModelChoice(model=pool.get(name).model, criteria=text)
        return ModelRouterMiddleware(choices=choices, instructions=instructions, classifier=UniRouteDecisionModel(pool=pool, **kwargs))

else:  # pragma: no cover

    def model_router_middleware(*args: Any, **kwargs: Any) -> Any:
        """Unavailable: this langchain has no ``ModelRouterMiddleware`` (use :class:`UniRouteMiddleware`)."""
        msg = "model_router_middleware needs langchain >= 1.5 (ModelRouterMiddleware); use UniRouteMiddleware."
        raise ImportError(msg)


def _emit(record: dict[str, Any]) -> None:
    try:
        dispatch_custom_event(DECISION_EVENT, record)
    except RuntimeError:  # no parent run
        pass


async def _aemit(record: dict[str, Any]) -> None:
    try:
        await adispatch_custom_event(DECISION_EVENT, record)
    except RuntimeError:
        pass


class UniRouteMiddleware(AgentMiddleware):
    """Route every model call of a ``create_agent`` agent with UniRoute (``wrap_model_call``).

    Each call's routing text comes from the request's messages; only candidates that can serve the
    call are ranked (tool-calling ones when the agent has tools, image-capable ones for images).
    The chosen model replaces ``request.model``; the other middleware (``ModelFallbackMiddleware``,
    ``ModelRetryMiddleware``, ...) placed after this one wrap the chosen model's call.

    Args:
        source: A ``UniRouteChatModel``, ``UniRouteRunnable`` or ``CandidatePool``.
        routing_input: What is embedded (default: the latest user message).
        options: Routing options for every call (``cost_weight``, ``budget``, ...).
    """

    def __init__(self, source: Any, *, routing_input: RoutingInput = "last_user", options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.pool = _pool_of(source)
        self.routing_input = routing_input
        self.options = dict(options or {})

    def _decide_args(self, request: ModelRequest) -> tuple[str, Any]:
        messages: list[BaseMessage] = list(request.messages)
        needs = set()
        if request.tools:
            needs.add("tool_calling")
        if has_images(messages):
            needs.add("image_inputs")
        if request.response_format is not None:
            needs.add("structured_output")
        options = restrict(self.pool, self.pool.resolve(self.options), needs, capabilities)
        return routing_text(messages, self.routing_input), options

    def _chosen(self, decision: Any) -> BaseChatModel:
        return self.pool.get(decision.model).model

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        """Route this call, then hand the request, with the chosen model, to the next handler."""
        text, options = self._decide_args(request)
        started = time.perf_counter()
        decision = self.pool.decide(text, options)
        seconds = time.perf_counter() - started
        _emit(decision.to_dict())
        response = handler(request.override(model=self._chosen(decision)))
        self._book(decision, response, seconds)
        return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        """Async :meth:`wrap_model_call` (the embedding runs in a worker thread)."""
        text, options = self._decide_args(request)
        started = time.perf_counter()
        decision = await self.pool.adecide(text, options)
        seconds = time.perf_counter() - started
        await _aemit(decision.to_dict())
        response = await handler(request.override(model=self._chosen(decision)))
        self._book(decision, response, seconds)
        return response

    def _book(self, decision: Any, response: Any, seconds: float) -> None:
        """Book the call in the pool's savings ledger, if any. Which model answered is read from the
        message (a fallback middleware may have answered with a model outside the pool: not booked)."""
        from unirouter.integration.savings import book_call

        messages = [m for m in getattr(response, "result", None) or [] if isinstance(m, AIMessage)]
        if not messages or getattr(self.pool, "savings", None) is None:
            return
        message = messages[-1]
        name = message.response_metadata.get("model_name")
        answered = name if name in decision.candidates else None
        book_call(self.pool, decision, answered_by=answered, usage=message.usage_metadata, routing_seconds=seconds)
