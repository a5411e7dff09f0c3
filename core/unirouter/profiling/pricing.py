"""Price the call that is actually sent, before and after it is made.

A profile's per-cluster cost is the mean cost of the *validation prompts* (short questions). At
routing time the prompt sent can be far longer (a RAG template with retrieved context, a long
conversation), so that figure under-prices it. With per-token prices the expected cost of sending
prompt ``p`` to model ``h`` is

    E[cost(p, h)] = in_tokens(p) * price_in(h) + E[out_tokens(h) | kind of p] * price_out(h)

where ``in_tokens(p)`` counts the prompt actually sent and the expected output is read off the model's
profile: its output tokens on the validation prompts, averaged per part (cluster) like the error
is, and weighted by the routing text's cluster weights (so a model that writes long answers to maths
questions is priced that way on maths questions). Output tokens come from the profile's metadata
(recorded by the profiler) or, for profiles built from known per-prompt costs, are recovered from
those costs and the price: ``(cost * 1e6 - in_tokens * price_in) / price_out``.

Models with a flat cost per query (a number, not a :class:`TokenPrice`) keep the profile's expected
cost: nothing is known about their tokens.

After the call, :meth:`CallPricer.realised_cost` prices the usage the provider reported (or, when it
reports none, the characters sent and received, at ``chars_per_token``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from unirouter.profiling.response_cache import TokenPrice, usage_tokens
from unirouter.exceptions import InvalidInputError
from unirouter.profiles import ModelProfile, cluster_statistics

__all__ = ["CallPricer", "count_tokens"]

DEFAULT_CHARS_PER_TOKEN = 4.0


def count_tokens(text: str, *, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> float:
    """Estimated tokens of ``text``: characters / ``chars_per_token`` (about 4 for English with
    OpenAI-style BPE tokenizers; the same rule the profiler uses when a model reports no usage)."""
    return len(text) / chars_per_token


def _as_price(name: str, value: Any) -> TokenPrice | float:
    if isinstance(value, TokenPrice):
        return value
    if isinstance(value, Mapping) and {"input_per_mtok", "output_per_mtok"} <= set(value):
        return TokenPrice(**{k: v for k, v in value.items() if k != "type"})
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    msg = f"price of {name!r} must be a TokenPrice or a cost per query >= 0. Got {value!r}."
    raise InvalidInputError(msg)


class CallPricer:
    """Expected and realised cost of the prompt actually sent, per candidate model.

    Parameters
    ----------
    prices : mapping name -> TokenPrice or float
        Each model's per-token price (or flat cost per query).
    tokenizer : callable (str) -> number, optional
        Counts the tokens of a prompt; default ``len(text) / chars_per_token``.
    chars_per_token : float, default=4.0
        Used by the default tokenizer and when a response reports no usage.
    """

    def __init__(
        self,
        prices: Mapping[str, Any],
        *,
        tokenizer: Callable[[str], float] | None = None,
        chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
    ) -> None:
        if not isinstance(chars_per_token, (int, float)) or not chars_per_token > 0:
            msg = f"chars_per_token must be a number > 0. Got {chars_per_token!r}."
            raise InvalidInputError(msg)
        self.prices = {str(n): _as_price(str(n), p) for n, p in dict(prices).items()}
        self.tokenizer = tokenizer
        self.chars_per_token = float(chars_per_token)
        # (router id, profile id, name) -> (profile, router, tokens per part); holding the objects
        # keeps their ids from being reused while the entry lives.
        self._memo: dict[tuple[int, int, str], tuple[Any, Any, np.ndarray]] = {}

    # -- tokens --------------------------------------------------------------------------------
    def tokens(self, text: str) -> float:
        """Input tokens of ``text`` (the tokenizer's count, or characters / chars_per_token)."""
        if self.tokenizer is not None:
            return float(self.tokenizer(text))
        return count_tokens(text, chars_per_token=self.chars_per_token)

    def output_tokens(self, router: Any, profile: ModelProfile) -> np.ndarray | None:
        """Per-validation-prompt output tokens of a profiled model (None when they cannot be known)."""
        price = self.prices.get(profile.name)
        recorded = profile.metadata.get("output_tokens")
        if recorded is not None and len(recorded) == profile.scores.shape[0]:
            return np.array([np.nan if v is None else float(v) for v in recorded], dtype=np.float64)
        if not isinstance(price, TokenPrice) or profile.costs is None or price.output_per_mtok <= 0:
            return None
        vs = getattr(router, "validation_set_", None)
        if vs is None or len(vs) != profile.costs.shape[0]:
            return None
        tin = np.array([self.tokens(p) for p in vs.prompts], dtype=np.float64)
        out = (profile.costs * 1e6 - tin * price.input_per_mtok) / price.output_per_mtok
        return np.where(np.isnan(out), np.nan, np.maximum(out, 0.0))

    def _part_output_tokens(self, router: Any, profile: ModelProfile) -> np.ndarray | None:
        """Shrunk mean output tokens per part (P,), memoised per profile object and router state."""
        key = (id(router), id(profile), profile.name)
        if key not in self._memo:
            out = self.output_tokens(router, profile)
            if out is None:
                means = np.empty(0)
            else:
                means, _, _ = cluster_statistics(
                    out, router.validation_labels_, router.n_parts_, float(getattr(router, "prior_strength", 0.0) or 0.0)
                )
            self._memo[key] = (profile, router, means)
            if len(self._memo) > 4096:  # profiles replaced many times: forget the oldest
                self._memo.pop(next(iter(self._memo)))
        val = self._memo[key][2]
        return None if val.size == 0 else val

    # -- expected cost -------------------------------------------------------------------------
    def expected_costs(
        self,
        router: Any,
        embeddings: np.ndarray,
        input_tokens: Sequence[float] | np.ndarray,
        models: Sequence[str],
        profile_costs: np.ndarray,
    ) -> np.ndarray:
        """Expected cost ``(n, M)`` of sending prompts of ``input_tokens`` to ``models``.

        ``embeddings`` are the routing texts' embeddings (they set the kind of prompt, hence the
        expected output); ``profile_costs`` ``(n, M)`` are the router's own expected costs, kept for
        models without a per-token price or without known output tokens.
        """
        tin = np.asarray(input_tokens, dtype=np.float64).reshape(-1)
        out = np.array(profile_costs, dtype=np.float64, copy=True)
        pool = router._pool
        cols = pool.index(models)
        priced, part_tokens = [], []
        for j, name in enumerate(models):
            price = self.prices.get(name)
            if not isinstance(price, TokenPrice):
                continue
            parts = self._part_output_tokens(router, pool.profiles[name])
            if parts is None:  # no output tokens known: keep the profile's output, re-price the input
                continue
            priced.append(j)
            part_tokens.append(parts)
        if priced:
            sel = cols[priced]
            _, tout, _ = router._gamma_cost(embeddings, pool.psi[sel], np.vstack(part_tokens))
            for k, j in enumerate(priced):
                price = self.prices[models[j]]
                out[:, j] = (tin * price.input_per_mtok + tout[:, k] * price.output_per_mtok) / 1e6
        return out

    # -- realised cost -------------------------------------------------------------------------
    def realised_cost(
        self, name: str, usage: Any = None, *, prompt: str | None = None, response: str | None = None
    ) -> float | None:
        """Cost of one call to ``name`` from the usage it reported (tokens estimated from the prompt
        and response text where it reported none). A flat-priced model costs its price; a model with
        no price known returns None."""
        price = self.prices.get(name)
        if price is None:
            return None
        if not isinstance(price, TokenPrice):
            return float(price)
        tin, tout = usage_tokens(usage)
        if tin is None:
            tin = self.tokens(prompt) if prompt is not None else None
        if tout is None:
            tout = count_tokens(response, chars_per_token=self.chars_per_token) if response is not None else None
        if tin is None or tout is None:
            return None
        return float(price.cost(tin, tout))
