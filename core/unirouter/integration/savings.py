"""A savings report: what routing spent against always using the best (or a named) model.

Users ask a router to prove it beats "always the best model". :class:`SavingsLedger` books every
routed call: the model that answered, its realised cost (from token usage and a ``TokenPrice``, else
the router's expected cost), and the counterfactual of the baseline model on the same prompt (its
expected cost and predicted error, from the same decision), plus the router's own overhead
(routing time per call, and profiling spend once). :meth:`SavingsLedger.summary` totals it per pool
or per session as a :class:`SavingsSummary`.

Both plugins book calls when a ledger is attached to their pool (``chat.pool.savings = ledger``);
each decision record then carries its entry under ``"savings"``. With ``path=`` every entry is also
appended to a JSON-lines log, which ``unirouter savings LOG [--plot out.png]`` summarises.

The baseline's cost is the router's *expected* cost on that prompt (the call was not made), so
compare it with ``expected_cost`` for like-for-like savings; ``realised_cost`` shows what was spent.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from unirouter.exceptions import InvalidInputError, PersistenceError, UnknownModelError

__all__ = ["SavingsEntry", "SavingsLedger", "SavingsSummary", "book_call", "summarise", "top_model"]


class SavingsEntry(BaseModel):
    """One routed call, booked against the baseline."""

    model_config = ConfigDict(frozen=True)

    time: float
    session: str | None
    model: str
    answered_by: str
    baseline: str
    realised_cost: float
    realised_from_usage: bool
    expected_cost: float
    baseline_cost: float | None
    predicted_error: float
    baseline_predicted_error: float | None
    routing_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``None`` where the baseline was not among the call's candidates)."""
        return self.model_dump()


class SavingsSummary(BaseModel):
    """Totals over booked calls.

    ``saved_expected`` = baseline expected cost - routed expected cost (like for like);
    ``saved_realised`` = baseline expected cost - realised cost. Calls whose candidates did not
    include the baseline (e.g. restricted to tool-capable models) count in ``n_calls`` but not in
    the comparison (``n_compared``).
    """

    model_config = ConfigDict(frozen=True)

    baseline: str
    session: str | None
    n_calls: int
    n_compared: int
    realised_cost: float
    expected_cost: float
    baseline_cost: float
    saved_expected: float
    saved_realised: float
    saved_fraction: float | None
    predicted_error: float | None
    baseline_predicted_error: float | None
    routing_seconds: float
    profiling_cost: float
    calls_by_model: dict[str, int]

    def to_text(self) -> str:
        """A short human-readable report."""
        frac = "n/a" if self.saved_fraction is None else f"{100 * self.saved_fraction:.1f}%"
        err = "n/a" if self.predicted_error is None else f"{self.predicted_error:.3f}"
        base_err = "n/a" if self.baseline_predicted_error is None else f"{self.baseline_predicted_error:.3f}"
        lines = [
            f"calls                {self.n_calls} ({self.n_compared} comparable with baseline {self.baseline!r})"
            + (f", session {self.session!r}" if self.session else ""),
            f"spent (realised)     ${self.realised_cost:.6f}",
            f"spent (expected)     ${self.expected_cost:.6f}",
            f"always {self.baseline:<13} ${self.baseline_cost:.6f} (expected)",
            f"saved                ${self.saved_expected:.6f} expected ({frac}), ${self.saved_realised:.6f} realised",
            f"predicted error      {err} routed vs {base_err} baseline",
            f"overhead             {self.routing_seconds:.3f} s routing, ${self.profiling_cost:.6f} profiling",
            "calls by model       " + ", ".join(f"{k}: {v}" for k, v in sorted(self.calls_by_model.items())),
        ]
        return "\n".join(lines)


def top_model(router: Any, names: Sequence[str] | None = None) -> str:
    """The model with the lowest validation error among ``names`` (default: all the router holds)."""
    names = list(names if names is not None else router.models_)
    if not names:
        msg = "no models to pick a baseline from."
        raise InvalidInputError(msg)
    return min(names, key=lambda n: (float(router.get_profile(n).global_error), n))


def profiling_spend(router: Any, names: Iterable[str]) -> float:
    """Approximate profiling spend: calls made (not cached) times each model's cost per query."""
    total = 0.0
    for n in names:
        p = router.get_profile(n)
        total += float(p.stats.calls_made) * float(p.cost_per_query)
    return total


def _as_dict(decision: Any) -> dict[str, Any]:
    return decision if isinstance(decision, Mapping) else decision.to_dict()


def _price(price: Any, usage: Mapping[str, Any] | None) -> float | None:
    if usage is None or price is None or not hasattr(price, "cost"):
        return None
    return float(price.cost(float(usage.get("input_tokens", 0)), float(usage.get("output_tokens", 0))))


class SavingsLedger:
    """Running account of routed calls against a baseline model.

    Parameters
    ----------
    baseline : str
        The counterfactual model ("always use this one"); see :meth:`for_pool` for "the best".
    name : str, optional
        The pool's name in reports.
    profiling_cost : float
        The router's one-off profiling spend, reported as overhead.
    path : str or Path, optional
        Append every entry as one JSON line (the file is never truncated).
    session : str, optional
        Default session for entries booked without one.
    """

    def __init__(self, baseline: str, *, name: str | None = None, profiling_cost: float = 0.0, path: str | Path | None = None, session: str | None = None) -> None:
        if not isinstance(baseline, str) or not baseline:
            msg = f"baseline must be a model name. Got {baseline!r}."
            raise InvalidInputError(msg)
        self.baseline = baseline
        self.name = name
        self.profiling_cost = float(profiling_cost)
        self.path = None if path is None else Path(path)
        self.session = session
        self.entries: list[SavingsEntry] = []
        self._lock = threading.Lock()

    @classmethod
    def for_pool(cls, pool: Any, *, baseline: str | None = None, **kwargs: Any) -> SavingsLedger:
        """A ledger for a ``CandidatePool`` (or a plugin object's ``.pool``), attached to it.

        ``baseline`` defaults to the candidate with the lowest validation error; the profiling
        overhead is estimated from the candidates' profiling statistics.
        """
        pool = getattr(pool, "pool", pool)
        names = pool.names
        if baseline is None:
            baseline = top_model(pool.router, names)
        elif baseline not in names:
            msg = f"baseline {baseline!r} is not a candidate; candidates: {names}."
            raise UnknownModelError(msg, model=baseline)
        kwargs.setdefault("profiling_cost", profiling_spend(pool.router, names))
        ledger = cls(baseline, **kwargs)
        pool.savings = ledger
        return ledger

    def record(
        self,
        decision: Any,
        *,
        answered_by: str | None = None,
        usage: Mapping[str, Any] | None = None,
        price: Any = None,
        routing_seconds: float | None = None,
        session: str | None = None,
    ) -> SavingsEntry:
        """Book one call.

        Args:
            decision: The ``RoutingDecision`` (or its ``to_dict()``).
            answered_by: The model that answered (after fallbacks); default the chosen one.
            usage: ``{"input_tokens", "output_tokens"}`` of the answer, if known.
            price: The answering model's cost spec; a ``TokenPrice`` prices ``usage``.
            routing_seconds: Time spent deciding (embedding included).
            session: Session key (default the ledger's).
        """
        d = _as_dict(decision)
        answered = answered_by or d["model"]
        costs, errors = d["expected_cost"], d["predicted_error"]
        if answered not in costs:
            msg = f"answered_by={answered!r} is not among the decision's candidates {list(costs)}."
            raise InvalidInputError(msg)
        realised = _price(price, usage)
        entry = SavingsEntry(
            time=time.time(),
            session=session if session is not None else self.session,
            model=d["model"],
            answered_by=answered,
            baseline=self.baseline,
            realised_cost=float(costs[answered]) if realised is None else realised,
            realised_from_usage=realised is not None,
            expected_cost=float(costs[answered]),
            baseline_cost=float(costs[self.baseline]) if self.baseline in costs else None,
            predicted_error=float(errors[answered]),
            baseline_predicted_error=float(errors[self.baseline]) if self.baseline in errors else None,
            routing_seconds=None if routing_seconds is None else float(routing_seconds),
        )
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry.to_dict()) + "\n")
        return entry

    def summary(self, session: str | None = None) -> SavingsSummary:
        """Totals over all entries, or over one session's."""
        with self._lock:
            entries = [e for e in self.entries if session is None or e.session == session]
        return summarise(entries, self.baseline, session=session, profiling_cost=self.profiling_cost)

    def sessions(self) -> dict[str | None, SavingsSummary]:
        """One summary per session."""
        keys = dict.fromkeys(e.session for e in self.entries)
        return {k: self.summary(k) if k is not None else summarise([e for e in self.entries if e.session is None], self.baseline, profiling_cost=0.0) for k in keys}

    @classmethod
    def from_jsonl(cls, path: str | Path, *, baseline: str | None = None) -> SavingsLedger:
        """Reload a log written with ``path=`` (read only; the new ledger does not append to it)."""
        p = Path(path)
        if not p.is_file():
            msg = f"{p} does not exist; write a log with SavingsLedger(..., path={str(p)!r})."
            raise PersistenceError(msg, path=p)
        entries = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(SavingsEntry.model_validate_json(line))
            except ValueError as e:
                msg = f"{p}:{i} is not a savings entry: {e}."
                raise PersistenceError(msg, path=p) from e
        if not entries:
            msg = f"{p} holds no savings entries."
            raise PersistenceError(msg, path=p)
        ledger = cls(baseline or entries[-1].baseline)
        ledger.entries = entries
        return ledger

    def plot(self, path: str | Path | None = None, *, session: str | None = None, overwrite: bool = False) -> Any:
        """Cumulative spend of the router against the baseline (matplotlib figure; saved if ``path``).

        Needs matplotlib (``pip install matplotlib``). An existing ``path`` needs ``overwrite=True``.
        """
        if path is not None and Path(path).exists() and not overwrite:
            msg = f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it."
            raise PersistenceError(msg, path=Path(path))
        try:
            import matplotlib
        except ImportError:
            msg = "plotting needs matplotlib: pip install matplotlib."
            raise InvalidInputError(msg) from None

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        entries = [e for e in self.entries if (session is None or e.session == session) and e.baseline_cost is not None]
        routed, base, realised = [0.0], [0.0], [0.0]
        for e in entries:
            routed.append(routed[-1] + e.expected_cost)
            realised.append(realised[-1] + e.realised_cost)
            base.append(base[-1] + float(e.baseline_cost or 0.0))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(base, label=f"always {self.baseline} (expected)")
        ax.plot(routed, label="routed (expected)")
        ax.plot(realised, label="routed (realised)", linestyle="--")
        ax.set_xlabel("calls")
        ax.set_ylabel("cumulative cost")
        ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
            plt.close(fig)
        return fig

    def __getstate__(self) -> dict[str, Any]:  # locks do not pickle
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SavingsLedger(baseline={self.baseline!r}, entries={len(self.entries)})"


def summarise(entries: Sequence[SavingsEntry], baseline: str, *, session: str | None = None, profiling_cost: float = 0.0) -> SavingsSummary:
    """A :class:`SavingsSummary` over ``entries``."""
    compared = [e for e in entries if e.baseline_cost is not None]
    expected = sum(e.expected_cost for e in compared)
    base = sum(float(e.baseline_cost or 0.0) for e in compared)
    realised_cmp = sum(e.realised_cost for e in compared)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.answered_by] = counts.get(e.answered_by, 0) + 1
    errs = [e.predicted_error for e in compared]
    base_errs = [float(e.baseline_predicted_error) for e in compared if e.baseline_predicted_error is not None]
    return SavingsSummary(
        baseline=baseline,
        session=session,
        n_calls=len(entries),
        n_compared=len(compared),
        realised_cost=sum(e.realised_cost for e in entries),
        expected_cost=sum(e.expected_cost for e in entries),
        baseline_cost=base,
        saved_expected=base - expected,
        saved_realised=base - realised_cmp,
        saved_fraction=(base - expected) / base if base > 0 and math.isfinite(base) else None,
        predicted_error=sum(errs) / len(errs) if errs else None,
        baseline_predicted_error=sum(base_errs) / len(base_errs) if base_errs else None,
        routing_seconds=sum(e.routing_seconds or 0.0 for e in entries),
        profiling_cost=profiling_cost,
        calls_by_model=counts,
    )


def book_call(pool: Any, decision: Any, *, answered_by: str | None, usage: Any = None, routing_seconds: float | None = None) -> dict[str, Any] | None:
    """Book one plugin call in ``pool.savings`` if a ledger is attached; the entry as a dict, else None.

    ``usage`` is any usage mapping or object the core understands (LangChain ``usage_metadata``,
    OpenAI ``prompt_tokens``/``completion_tokens``, ...); the answering candidate's cost spec prices it.
    """
    from unirouter.profiling.response_cache import usage_tokens

    ledger = getattr(pool, "savings", None)
    if ledger is None or answered_by is None:
        return None
    tokens_in, tokens_out = usage_tokens(usage)
    tokens = None if tokens_in is None and tokens_out is None else {"input_tokens": tokens_in or 0.0, "output_tokens": tokens_out or 0.0}
    entry = ledger.record(decision, answered_by=answered_by, usage=tokens, price=pool.get(answered_by).cost, routing_seconds=routing_seconds)
    return entry.to_dict()


# -- CLI -----------------------------------------------------------------------------------------
def cmd_savings(args: Any) -> int:
    ledger = SavingsLedger.from_jsonl(args.log, baseline=None)
    if args.json:
        print(json.dumps({str(k): s.model_dump() for k, s in ledger.sessions().items()} if args.by_session else ledger.summary(args.session).model_dump(), indent=2))
    elif args.by_session:
        for key, s in ledger.sessions().items():
            print(f"== session {key!r}")
            print(s.to_text())
    else:
        print(ledger.summary(args.session).to_text())
    if args.plot:
        ledger.plot(args.plot, session=args.session, overwrite=args.overwrite)
        print(f"plot written to {args.plot}")
    return 0


def register(sub: Any) -> None:
    """Add the ``savings`` sub-command to the ``unirouter`` CLI."""
    p = sub.add_parser("savings", help="summarise a savings log", description="Summarise logged routing decisions against always using the baseline model (a log written by SavingsLedger(path=...)).")
    p.add_argument("log", help="JSON-lines log written by SavingsLedger(path=...)")
    p.add_argument("--session", default=None, help="only this session")
    p.add_argument("--by-session", action="store_true", help="one summary per session")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", default=None, help="write a cumulative-cost plot (PNG) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plot file")
    p.set_defaults(func=cmd_savings)
