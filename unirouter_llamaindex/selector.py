"""UniRouteSelector: pick the query engine (or retriever, or tool) whose LLM UniRoute predicts best."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_selector import (
    BaseSelector,
    SelectorResult,
    SingleSelection,
)
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata
from unirouter import InvalidInputError, UnknownModelError
from unirouter.integration import CandidatePool, RoutingOptions

from unirouter_llamaindex import _adapters as ad

__all__ = ["UniRouteSelector"]


class UniRouteSelector(BaseSelector):
    """A LlamaIndex selector that chooses among choices by the UniRoute decision for the query.

    Each choice stands for a model the router has profiled, matched by ``ToolMetadata.name``
    (or through ``model_names``). The selector asks the router which of those models has the lowest
    ``predicted error + cost_weight * expected cost`` on the query and selects that choice; the
    reason states the predicted error and cost. Use it in ``RouterQueryEngine`` or
    ``RouterRetriever`` over query engines (or retrievers) that each use a different LLM. No LLM is
    called to select.

    Args:
        router: A fitted :class:`unirouter.UniRouter` holding the models' profiles, or a
            :class:`unirouter.integration.CandidatePool` (e.g. ``UniRouteLLM(...).pool``).
        model_names: Maps a choice name to a model name when they differ
            (``{"physics_engine": "gpt-4o"}``); other choices use their own name.
        fallback_selector: Selector used when some choice is not a profiled model (or has no
            name). Without it, such choices raise :class:`unirouter.UnknownModelError`.
        choice_models: The model behind each choice, in the order the choices are given, for
            choices that are not named like models (or have no name at all), e.g.
            ``choice_models=["gpt-4o", "llama"]`` for ``[sql_tool, vector_tool]``.
        options: Default routing options (``cost_weight``, ``budget``, ``excluded_models``, ...);
            the choices set ``allowed_models`` on each call.

    Examples:
        ```python
        from llama_index.core.query_engine import RouterQueryEngine
        from llama_index.core.tools import QueryEngineTool

        tools = [
            QueryEngineTool.from_defaults(index.as_query_engine(llm=small), name="small", description="..."),
            QueryEngineTool.from_defaults(index.as_query_engine(llm=large), name="large", description="..."),
        ]
        engine = RouterQueryEngine(selector=UniRouteSelector(router, options={"cost_weight": 20.0}),
                                   query_engine_tools=tools, llm=small)
        response = engine.query("What is the derivative of x**2?")
        response.metadata["selector_result"].reason
        ```
    """

    def __init__(
        self,
        router: Any,
        *,
        model_names: Mapping[str, str] | None = None,
        fallback_selector: BaseSelector | None = None,
        options: RoutingOptions | Mapping[str, Any] | None = None,
        choice_models: Sequence[str] | None = None,
    ) -> None:
        if choice_models is not None and (isinstance(choice_models, str) or not all(isinstance(m, str) for m in choice_models)):
            msg = f"choice_models must be a list of model names, one per choice. Got {choice_models!r}."
            raise InvalidInputError(msg)
        self._choice_models = None if choice_models is None else list(choice_models)
        self._own_pool = not isinstance(router, CandidatePool)
        if self._own_pool:
            self._pool = CandidatePool(router, defaults=options)
        else:
            self._pool = router
            if options is not None:
                msg = "options= applies to a router; a CandidatePool brings its own defaults."
                raise InvalidInputError(msg)
        self._model_names = dict(model_names or {})
        self._fallback = fallback_selector

    @classmethod
    def from_defaults(cls, router: Any, **kwargs: Any) -> UniRouteSelector:
        """LlamaIndex's usual constructor name; same arguments as the class."""
        return cls(router, **kwargs)

    @property
    def pool(self) -> CandidatePool:
        """The candidate pool the selector decides with."""
        return self._pool

    def _get_prompts(self) -> dict[str, Any]:
        """No prompts: the selector calls no LLM."""
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """No prompts to update."""

    def _models_for(self, choices: Sequence[ToolMetadata]) -> list[str] | None:
        """The model of each choice, or None when the fallback selector must decide."""
        if not choices:
            msg = "UniRouteSelector needs at least one choice to select from. Got an empty list."
            raise InvalidInputError(msg)
        if self._choice_models is not None:
            if len(self._choice_models) != len(choices):
                msg = f"choice_models names {len(self._choice_models)} models but there are {len(choices)} choices; give one per choice, in order."
                raise InvalidInputError(msg)
            models: list[str | None] = list(self._choice_models)
        else:
            models = [self._model_names.get(c.name, c.name) if c.name else None for c in choices]
        known = set(self._pool.names) | (set(self._pool.router.models_) if self._own_pool else set())
        unknown = [m if self._choice_models is not None else c.name for c, m in zip(choices, models) if m is None or m not in known]
        if unknown:
            if self._fallback is not None:
                return None
            msg = (
                f"choices {unknown} are not profiled models; profiled: {sorted(known)}. Name each choice "
                "after its model (ToolMetadata.name), map it with model_names=, or give a fallback_selector=."
            )
            raise UnknownModelError(msg, model=str(unknown[0]))
        if self._own_pool:  # mirror the router's profiles as candidates (no model object is ever called)
            for m in dict.fromkeys(models):
                if m not in self._pool.names:
                    self._pool.add(m, None, None, cost=self._pool.router.get_profile(m).cost_per_query)
        return models  # type: ignore[return-value]

    def _prepare(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> tuple[list[str], str, RoutingOptions] | None:
        """Everything but the decision itself: (choice models, routing text, options), or None for the fallback."""
        models = self._models_for(choices)
        if models is None:
            return None
        text = ad.require_text(query.query_str, "the query given to UniRouteSelector")
        defaults = self._pool.defaults.allowed_models
        allowed = [m for m in dict.fromkeys(models) if defaults is None or m in defaults]
        return models, text, RoutingOptions.parse({"allowed_models": allowed})

    def _result(self, models: list[str], decision: Any) -> SelectorResult:
        if decision.model not in models:  # a forced model outside the choices
            msg = f"the router chose {decision.model!r}, which is none of the choices {models}; check force_model."
            raise InvalidInputError(msg)
        ad.emit("selector", decision.to_dict())
        i = decision.candidates.index(decision.model)
        others = list(decision.ranked[1:3])
        reason = (
            f"UniRoute chose {decision.model!r}: predicted error {float(decision.predicted_error[i]):.3f}, "
            f"expected cost ${float(decision.expected_cost[i]):.6f}/query (cost weight {decision.cost_weight:g})"
            + (f"; next best: {', '.join(others)}" if others else "")
        )
        return SelectorResult(selections=[SingleSelection(index=models.index(decision.model), reason=reason)])

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        if (prepared := self._prepare(choices, query)) is None:
            return self._fallback.select(choices, query)  # type: ignore[union-attr]
        models, text, options = prepared
        return self._result(models, self._pool.decide(text, options))

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        if (prepared := self._prepare(choices, query)) is None:
            return await self._fallback.aselect(choices, query)  # type: ignore[union-attr]
        models, text, options = prepared
        return self._result(models, await self._pool.adecide(text, options))
