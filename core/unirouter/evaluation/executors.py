"""Where independent jobs run: in this process (the default) or on a Ray cluster.

Evaluation trials are independent given the prepared data (embeddings, labels, costs) and a seed,
so they can run anywhere as long as every worker sees the same data. An executor maps a picklable
module-level function ``fn(shared, item)`` over items and yields ``(index, result)`` as each job
finishes (so callers can report progress and checkpoint); callers put results back in index order,
which is what makes a Ray run give the same per-trial results as an in-process run.

:class:`RayExecutor` puts ``shared`` into Ray's object store once (numpy arrays inside are read
zero-copy by workers on the same node) instead of shipping it with every task. Ray is an optional
extra (``pip install 'unirouter[ray]'``) and is imported only when a :class:`RayExecutor` starts
work: ``import unirouter`` never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from unirouter.exceptions import InvalidInputError

__all__ = ["Executor", "InProcessExecutor", "RayExecutor", "import_ray"]


def import_ray() -> Any:
    """Import Ray, or say how to install it."""
    try:
        import ray
    except ImportError:
        msg = "this needs Ray, an optional extra: pip install 'unirouter[ray]'"
        raise ImportError(msg) from None
    return ray


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn(shared, item)`` for every item; yields ``(index, result)`` as jobs finish."""

    def map_unordered(self, fn: Callable[[Any, Any], Any], shared: Any, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:  # pragma: no cover - protocol
        ...


class InProcessExecutor:
    """One job after another in the calling process (the default; no extra dependency)."""

    def map_unordered(self, fn: Callable[[Any, Any], Any], shared: Any, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        for i, item in enumerate(items):
            yield i, fn(shared, item)

    def __repr__(self) -> str:
        return "InProcessExecutor()"


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return fn(shared, item)


class RayExecutor:
    """Jobs as Ray tasks, at most ``num_workers`` at a time.

    Parameters
    ----------
    address : str, optional
        Ray cluster to connect to (``"auto"``, ``"ray://head:10001"``, ...). None: use the Ray
        runtime already initialised in this process, or start a local one.
    num_workers : int, optional
        Jobs in flight at once. Default: the cluster's CPUs divided by ``num_cpus_per_task``.
    num_cpus_per_task : float, default=1
        CPUs Ray reserves for each job (also what Ray sets ``OMP_NUM_THREADS`` to in the worker).
    init_kwargs : dict, optional
        Extra ``ray.init`` arguments when this executor starts or connects to Ray, e.g.
        ``{"runtime_env": {"pip": ["unirouter[ray]"]}}`` for a cluster whose nodes lack the package,
        or ``{"num_cpus": 2}`` for a local runtime.
    timeout : float, optional
        Seconds to wait for the next job to finish before giving up (``TimeoutError``; the jobs
        left are cancelled). None: wait as long as it takes.

    The executor shuts down only a Ray runtime it started itself (:meth:`shutdown`, or use it as a
    context manager).
    """

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        *,
        num_cpus_per_task: float = 1,
        init_kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1):
            msg = f"num_workers must be an int >= 1 or None. Got {num_workers!r}."
            raise InvalidInputError(msg)
        if isinstance(num_cpus_per_task, bool) or not isinstance(num_cpus_per_task, (int, float)) or not num_cpus_per_task > 0:
            msg = f"num_cpus_per_task must be a number > 0. Got {num_cpus_per_task!r}."
            raise InvalidInputError(msg)
        self.address = address
        self.num_workers = num_workers
        self.num_cpus_per_task = num_cpus_per_task
        self.init_kwargs = init_kwargs
        self.timeout = timeout
        self._started = False

    def _ray(self) -> Any:
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, **(self.init_kwargs or {}))
            self._started = True
        return ray

    def workers(self) -> int:
        """Jobs run at once (starts or connects to Ray if needed)."""
        ray = self._ray()
        if self.num_workers is not None:
            return self.num_workers
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.num_cpus_per_task))

    def map_unordered(self, fn: Callable[[Any, Any], Any], shared: Any, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        ray = self._ray()
        limit = self.workers()
        shared_ref = ray.put(shared)  # once: every task reads the same object
        remote = ray.remote(num_cpus=self.num_cpus_per_task, max_retries=0)(_call)
        pending: dict[Any, int] = {}
        todo = enumerate(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < limit:
                    nxt = next(todo, None)
                    if nxt is None:
                        exhausted = True
                        break
                    i, item = nxt
                    pending[remote.remote(fn, shared_ref, item)] = i
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout)
                if not done:
                    msg = f"no Ray job finished within {self.timeout} s ({len(pending)} in flight)."
                    raise TimeoutError(msg)
                ref = done[0]
                i = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                yield i, value
        finally:
            for ref in pending:  # stop what is left when the caller stops early or a job failed
                ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_workers={self.num_workers!r})"
