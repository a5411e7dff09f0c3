"""DifficultyRouter: shared prompt factors learned from known LLMs, a per-model logistic profile.

UniRoute describes a prompt by the cluster it falls in and a model by its error per cluster. Two
prompts of the same cluster then look the same to the router, although the known (training) LLMs
often disagree about them in a way the embedding predicts: some prompts are hard for every model,
some are hard only for one family. This router learns those shared directions from the training
LLMs' labels on the (large) training prompt set, and describes a new model by a handful of
coefficients fitted on its validation labels alone (an item-response model):

    gamma(x, h) = 1 - sigmoid(beta_h . f(x)),     f(x) = [1, z(x), onehot_K(x)]  in R^P

* ``z(x) = W^T (phi(x) - m)`` (r factors). A ridge regression (penalty by generalised
  cross-validation) predicts each training LLM's centred correctness from the embedding; ``W`` spans
  the top ``r`` principal directions of those predictions (the first is, in practice, shared
  difficulty), each factor scaled to unit variance on the training prompts.
* ``onehot_K(x)``: nearest K-means centroid (optional, ``n_clusters=0`` disables it): the UniRoute
  cluster term, so cluster-specific strengths remain expressible.
* ``beta_h`` (P numbers) is the maximum a posteriori logistic fit on ``h``'s validation labels under
  a Gaussian prior ``N(mu, diag(tau^2))``. ``mu`` and ``tau^2`` are estimated by empirical Bayes
  (EM) from the training LLMs' labels, so a factor or cluster that does not separate the known models
  is shrunk away (automatic relevance). The prior is fitted where the factors are *out of sample*, as
  they are for a new model: on the training prompts with factor values from ridge fits that did not
  see them (``prior_folds`` folds), plus the validation prompts. Estimated on the validation labels
  alone (``prior_folds=0``, the first version) the prior came out too narrow when S_val is small and
  shrank every new model toward the average known one.

``n_factors`` is only a cap (default 8): the prior's relevance pruning decides how many factors a
new model actually uses, on the training pool alone, so there is no per-dataset setting to tune.

Adding a model is a few damped Newton steps (Armijo line search, started at the model's own
success rate, converged on the gradient; issue 15) of a P-parameter logistic regression on its own labels (no
gradient step on anything shared, well under 10 ms); the shared map and the prior never change.
With per-prompt training costs (``train_cost=``), a shared log-cost shape ``s(x)`` is learned the
same way (ridge on the embedding), and a model's expected cost becomes ``c(h) * exp(s(x))`` scaled to
its mean validation cost.

The profile's ``cluster_error`` holds ``beta_h`` (like :class:`~unirouter.routers.baselines.KNNRouter`
holds raw errors there): the pool machinery of :class:`~unirouter.routers.base.BaseRouter` stacks it
as ``psi`` and :meth:`DifficultyRouter._gamma_cost` applies the logistic form.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from unirouter.routers.base import BaseRouter
from unirouter.routers.cluster_maps import KMeansMap, fit_kmeans
from unirouter._validation import (
    as_rng,
    check_int,
    check_known_labels,
    check_random_state,
)
from unirouter.data.datasets import ValidationSet
from unirouter.exceptions import ConvergenceWarning, InvalidInputError, UniRouterWarning
from unirouter.profiles import ModelProfile, ProfilingStats

__all__ = ["DifficultyRouter", "MapFit", "fit_logistic_map", "neg_log_posterior", "ridge_gcv", "solve_logistic_map"]

_ALPHAS = np.geomspace(1e-2, 1e4, 25)  # ridge penalties tried by GCV
_TAU2_FLOOR = 1e-3  # smallest prior variance (a pruned coefficient stays at its prior mean)
_TAU2_INIT = 4.0
_INTERCEPT_VAR_MIN = 2.5**2  # weakly informative prior on a new model's level (see DifficultyRouter.fit)


def ridge_gcv(
    x: np.ndarray,
    targets: np.ndarray,
    alphas: np.ndarray = _ALPHAS,
    *,
    gram: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Multi-output ridge regression with one penalty chosen by generalised cross-validation.

    Works on the (D, D) Gram matrix, so the cost is one ``x^T x`` product (``gram`` = the output of
    :func:`_gram` reuses it). Returns ``(coef (D, m), x_mean (D,), alpha)``; predictions are
    ``(x - x_mean) @ coef + targets.mean(0)``.
    """
    xm, xc, evals, v = gram if gram is not None else _gram(x)
    t = np.asarray(targets - targets.mean(0), dtype=np.float64)
    n = xc.shape[0]
    proj = v.T @ (xc.T @ t)  # (D, m) = s * U^T t
    with np.errstate(divide="ignore", invalid="ignore"):
        ut2 = np.where(evals[:, None] > 1e-10, proj**2 / evals[:, None], 0.0).sum(
            1
        )  # ||U^T t||^2 per direction
    total = float((t**2).sum())
    best = (np.inf, float(alphas[0]))
    for a in alphas:
        f = evals / (evals + a)
        rss = total - float(((2 * f - f**2) * ut2).sum())
        gcv = rss / max(1.0 - f.sum() / n, 1e-6) ** 2
        if gcv < best[0]:
            best = (gcv, float(a))
    alpha = best[1]
    coef = v @ (proj / (evals + alpha)[:, None])
    return coef, xm, alpha


def _gram(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xm = x.mean(0)
    xc = np.asarray(x - xm, dtype=np.float64)
    evals, v = np.linalg.eigh(xc.T @ xc)
    return xm, xc, np.clip(evals, 0.0, None), v


def _factor_basis(xc: np.ndarray, coef: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``r`` principal directions ``V (m, r)`` of the predictions ``xc @ coef`` and the scale
    that gives each factor ``xc @ coef @ V / scale`` unit variance on ``xc``."""
    if r == 0:
        return np.zeros((coef.shape[1], 0)), np.ones(0)
    pred = xc @ coef
    _, _, vt = np.linalg.svd(pred - pred.mean(0), full_matrices=False)
    basis = vt[:r].T
    return basis, (pred @ basis).std(0) + 1e-12


def _out_of_fold_factors(
    x: np.ndarray, targets: np.ndarray, basis: np.ndarray, scale: np.ndarray, folds: int, seed: int | np.random.Generator | None
) -> np.ndarray:
    """Factor values of the training prompts from ridge fits that did not see them (n, r).

    A new model's validation prompts are unseen by the factor fit; the in-sample values of the
    training prompts fit the known models better than that, so a prior estimated on them would be
    too confident. Each fold is projected on the full fit's ``basis``, so the factors keep their
    meaning (no sign or order flips between folds).
    """
    out = np.zeros((x.shape[0], basis.shape[1]))
    for held in np.array_split(as_rng(seed).permutation(x.shape[0]), folds):
        rest = np.setdiff1d(np.arange(x.shape[0]), held)
        coef, xm, _ = ridge_gcv(x[rest], targets[rest])
        out[held] = (x[held] - xm) @ coef @ basis / scale
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _weighted_grams(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``F^T diag(w[:, j]) F`` for every column ``j`` of ``w``: (M, P, P)."""
    return np.stack([(f.T * w[:, j]) @ f for j in range(w.shape[1])])


class MapFit(NamedTuple):
    """Result of :func:`solve_logistic_map` for M models at once."""

    beta: np.ndarray  # (M, P) the returned point
    post_var: np.ndarray  # (M, P) diagonal of the inverse Hessian there (Laplace posterior variance)
    converged: np.ndarray  # (M,) bool: gradient test passed
    n_iter: np.ndarray  # (M,) Newton steps taken
    grad_norm: np.ndarray  # (M,) max-norm of the gradient of the objective at ``beta``


def neg_log_posterior(
    features: np.ndarray, y: np.ndarray, beta: np.ndarray, prior_mean: np.ndarray, prior_var: np.ndarray
) -> np.ndarray:
    """The MAP objective per model (M,): Bernoulli negative log-likelihood with fractional labels
    ``sum_i [softplus(z_i) - y_i z_i]`` over observed entries, ``z = F beta_h``, plus the Gaussian
    prior's ``0.5 sum_k (beta_k - mu_k)^2 / tau_k^2``. Written with ``logaddexp`` so it stays finite
    for any finite ``beta`` (the form ``log sigmoid`` overflows to -inf)."""
    obs = ~np.isnan(y)
    yz = np.where(obs, y, 0.0)
    z = np.asarray(features, dtype=np.float64) @ np.atleast_2d(beta).T
    nll = (np.where(obs, np.logaddexp(0.0, z) - yz * z, 0.0)).sum(0)
    return nll + 0.5 * ((np.atleast_2d(beta) - prior_mean) ** 2 / prior_var).sum(1)


def _start_point(f: np.ndarray, yz: np.ndarray, obs: np.ndarray, prior_mean: np.ndarray) -> np.ndarray:
    """Prior mean for the slopes, and the intercept that makes the mean predicted logit equal the
    logit of the model's own success rate (add-half corrected, so all-0 / all-1 labels stay finite).

    Starting at the prior mean itself is what diverged (issue 15): when the known models are weak and
    the new one strong, the prior mean sits where the likelihood's curvature is tiny and the first
    full Newton step overshoots by tens of logits.
    """
    m = yz.shape[1]
    beta = np.tile(prior_mean, (m, 1)).astype(np.float64)
    if not np.allclose(f[:, 0], 1.0):  # no intercept column: start at the prior mean
        return beta
    n_obs = obs.sum(0)
    rate = (yz.sum(0) + 0.5) / (n_obs + 1.0)
    offset = (f[:, 1:] @ prior_mean[1:]).mean() if f.shape[1] > 1 else 0.0
    has = n_obs > 0
    beta[has, 0] = np.log(rate[has]) - np.log1p(-rate[has]) - offset
    return beta


def solve_logistic_map(
    features: np.ndarray,
    y: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: np.ndarray,
    *,
    beta0: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> MapFit:
    """MAP logistic regression of several models at once: damped Newton with Armijo backtracking.

    The objective (:func:`neg_log_posterior`) is strictly convex (Gaussian prior), so Newton steps
    shortened until they decrease it enough converge from any start; the full step is taken near the
    optimum (quadratic convergence, typically 3-6 steps). A model counts as converged when
    ``max|grad| <= tol * max(1, n_observed)``: a test on the optimality condition itself, not on the
    step length (a step can be short because the line search shrank it).

    Parameters
    ----------
    features : (n, P); column 0 is the constant 1 when a start from the success rate is wanted.
    y : (n, M) quality in [0, 1] (graded scores are fractional labels); NaN = unknown.
    prior_mean, prior_var : (P,)
    beta0 : (M, P), optional
        Warm start (e.g. the previous EM iteration); default :func:`_start_point`.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    obs = ~np.isnan(y)
    yz = np.where(obs, y, 0.0)
    w_obs = obs.astype(np.float64)
    mu = np.asarray(prior_mean, dtype=np.float64)
    precision = 1.0 / np.asarray(prior_var, dtype=np.float64)
    m = y.shape[1]
    beta = _start_point(f, yz, obs, mu) if beta0 is None else np.array(beta0, dtype=np.float64)
    gtol = tol * np.maximum(1.0, obs.sum(0))
    n_iter = np.zeros(m, dtype=np.int64)
    converged = np.zeros(m, dtype=bool)
    stalled = np.zeros(m, dtype=bool)

    def objective(b: np.ndarray, cols: np.ndarray) -> np.ndarray:
        z = f @ b.T
        nll = (w_obs[:, cols] * (np.logaddexp(0.0, z) - yz[:, cols] * z)).sum(0)
        return nll + 0.5 * (precision * (b - mu) ** 2).sum(1)

    def gradient(b: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(f @ b.T)
        g = ((p - yz[:, cols]) * w_obs[:, cols]).T @ f + precision * (b - mu)  # (m, P)
        return g, p

    for _ in range(max_iter):
        active = np.flatnonzero(~converged & ~stalled)
        if active.size == 0:
            break
        b = beta[active]
        g, p = gradient(b, active)
        done = np.abs(g).max(1) <= gtol[active]
        converged[active[done]] = True
        active, b, g, p = active[~done], b[~done], g[~done], p[:, ~done]
        if active.size == 0:
            break
        hess = _weighted_grams(f, p * (1.0 - p) * w_obs[:, active]) + np.diag(precision)[None]
        step = -np.linalg.solve(hess, g[..., None])[..., 0]
        slope = (g * step).sum(1)  # < 0: a descent direction (hess is positive definite)
        current = objective(b, active)
        t = np.ones(active.size)
        accepted = np.zeros(active.size, dtype=bool)
        for _ in range(60):  # Armijo backtracking, per model
            todo = ~accepted
            trial = b[todo] + t[todo, None] * step[todo]
            ok = objective(trial, active[todo]) <= current[todo] + 1e-4 * t[todo] * slope[todo]
            idx = np.flatnonzero(todo)
            accepted[idx[ok]] = True
            t[idx[~ok]] *= 0.5
            if accepted.all():
                break
        beta[active[accepted]] = b[accepted] + t[accepted, None] * step[accepted]
        n_iter[active] += 1
        stalled[active[~accepted]] = True  # no decrease at working precision: the gradient test decides
    g, p = gradient(beta, np.arange(m))
    grad_norm = np.abs(g).max(1)
    converged = grad_norm <= gtol
    hess = _weighted_grams(f, p * (1.0 - p) * w_obs) + np.diag(precision)[None]
    post_var = np.diagonal(np.linalg.inv(hess), axis1=1, axis2=2).copy()
    return MapFit(beta, post_var, converged, n_iter, grad_norm)


def _intercept_only(f: np.ndarray, y: np.ndarray, prior_mean: np.ndarray, prior_var: np.ndarray) -> np.ndarray:
    """The safe fallback: slopes at the prior mean, the intercept solved exactly (a 1-D root of a
    monotone derivative, bracketed, with scipy's ``brentq``). It cannot diverge, and the profile's
    level follows the model's own validation labels."""
    from scipy.optimize import brentq

    obs = ~np.isnan(y)
    offset = f[obs][:, 1:] @ prior_mean[1:] if f.shape[1] > 1 else np.zeros(int(obs.sum()))
    yo = y[obs]
    mu0, prec0 = float(prior_mean[0]), 1.0 / float(prior_var[0])

    def deriv(b0: float) -> float:
        return float((_sigmoid(offset + b0) - yo).sum() + prec0 * (b0 - mu0))

    lo, hi = mu0 - 1.0, mu0 + 1.0
    while deriv(lo) > 0:
        lo = mu0 - 2 * (mu0 - lo)
    while deriv(hi) < 0:
        hi = mu0 + 2 * (hi - mu0)
    beta = prior_mean.astype(np.float64).copy()
    beta[0] = brentq(deriv, lo, hi, xtol=1e-12)
    return beta


def fit_logistic_map(
    features: np.ndarray,
    y: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: np.ndarray,
    *,
    beta0: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-8,
    warn: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP logistic regression of several models at once under a diagonal Gaussian prior.

    :func:`solve_logistic_map` (damped Newton, line search, gradient test); a model whose fit did not
    converge gets the intercept-only fit instead (slopes at the prior mean, the intercept exact; a
    prompt-blind profile at the model's own level) and, with ``warn``, a
    :class:`~unirouter.exceptions.ConvergenceWarning` says so. A non-finite point is never returned.

    Parameters
    ----------
    features : (n, P), column 0 the constant 1.
    y : (n, M) quality in [0, 1] (graded scores act as fractional labels); NaN = unknown.
    prior_mean, prior_var : (P,)

    Returns
    -------
    beta : (M, P) and the diagonal of the posterior covariance (M, P).
    """
    fit = solve_logistic_map(features, y, prior_mean, prior_var, beta0=beta0, max_iter=max_iter, tol=tol)
    bad = ~fit.converged | ~np.isfinite(fit.beta).all(1)
    if not bad.any():
        return fit.beta, fit.post_var
    f = np.asarray(features, dtype=np.float64)
    beta, post_var = fit.beta.copy(), fit.post_var.copy()
    for j in np.flatnonzero(bad):
        if np.allclose(f[:, 0], 1.0):
            beta[j] = _intercept_only(f, np.asarray(y, dtype=np.float64)[:, j], prior_mean, prior_var)
        else:
            beta[j] = prior_mean
        post_var[j] = prior_var
    if warn:
        worst = float(np.nanmax(np.where(bad, fit.grad_norm, np.nan)))
        warnings.warn(
            f"the MAP profile fit of {int(bad.sum())} of {bad.size} model(s) did not converge in {max_iter} "
            f"Newton steps (largest gradient {worst:.3g}); used the intercept-only fit instead (prompt-blind "
            "profile at the model's own validation level). Check the labels for NaN-free values in [0, 1].",
            ConvergenceWarning,
            stacklevel=2,
        )
    return beta, post_var


def _laplace_evidence(features: np.ndarray, y: np.ndarray, fit: MapFit, mu: np.ndarray, tau2: np.ndarray) -> float:
    """Laplace approximation of the log marginal likelihood of every model's labels under the prior
    N(mu, diag tau2), summed over models (up to a constant): the objective EM increases."""
    obs = ~np.isnan(y)
    p = _sigmoid(np.asarray(features, dtype=np.float64) @ fit.beta.T)
    hess = _weighted_grams(features, p * (1.0 - p) * obs) + np.diag(1.0 / tau2)[None]
    logdet = np.linalg.slogdet(hess)[1]
    obj = neg_log_posterior(features, y, fit.beta, mu, tau2)
    return float((-obj - 0.5 * np.log(tau2).sum() - 0.5 * logdet).sum())


def _empirical_bayes_prior(
    features: np.ndarray, y: np.ndarray, n_iter: int, *, tol: float = 1e-2
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Prior N(mu, diag tau^2) over the training models' coefficients, by EM on their labels.

    E-step: each model's MAP fit and Laplace variance under the current prior (warm-started damped
    Newton); M-step: mu = mean of the fits, tau^2 = their spread plus the mean posterior variance
    (floored). Plain EM creeps when a variance heads for its floor (a factor being pruned: tau^2
    shrinks by a few per cent per iteration), so the EM map is accelerated with SQUAREM (Varadhan and
    Roland 2008) on ``(mu, log tau^2)``, an extrapolated point being kept only if it does not lower
    the Laplace log marginal likelihood (the objective EM climbs; otherwise the plain two EM steps
    are kept). Convergence is tested on that objective: an iteration gaining less than ``tol`` nats
    per model (on a weak 8-model synthetic pool, stopping at 0.01 instead of 1e-4 moved new models'
    predicted quality by at most 0.006; the variances heading for the floor are what still moves). A step that would make the prior non-finite is refused (the last finite prior is
    kept). ``n_iter`` counts E-steps. Returns ``(mu, tau2, converged)``.
    """
    p = features.shape[1]
    mu, tau2 = np.zeros(p), np.full(p, _TAU2_INIT)
    if y.shape[1] < 2:  # one known model: nothing to learn the spread from; a weak prior around it
        beta, _ = fit_logistic_map(features, y, mu, tau2)
        return beta[0], tau2, True
    f = np.asarray(features, dtype=np.float64)
    log_floor = np.log(_TAU2_FLOOR)
    steps = 0

    def em_map(theta: np.ndarray, beta0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        nonlocal steps
        steps += 1
        m, t2 = theta[:p], np.exp(theta[p:])
        fit = solve_logistic_map(f, y, m, t2, beta0=beta0, max_iter=10)
        evidence = _laplace_evidence(f, y, fit, m, t2)
        new_mu = fit.beta.mean(0)
        new_tau2 = np.maximum(((fit.beta - new_mu) ** 2 + fit.post_var).mean(0), _TAU2_FLOOR)
        return np.r_[new_mu, np.log(new_tau2)], fit.beta, evidence

    theta = np.r_[mu, np.log(tau2)]
    beta = None
    previous = -np.inf
    converged = False
    while steps < n_iter:
        t1, b1, ev0 = em_map(theta, beta)  # ev0: the evidence at theta
        if not (np.isfinite(t1).all() and np.isfinite(ev0)):
            break
        if abs(ev0 - previous) < tol * y.shape[1]:
            converged = True
            break
        previous = ev0
        t2, b2, ev1 = em_map(t1, b1)
        if not np.isfinite(t2).all():
            theta, beta = t1, b1
            break
        theta0 = theta
        r, v = t1 - theta0, t2 - 2 * t1 + theta0
        theta, beta = t2, b2
        if np.linalg.norm(v) == 0 or steps >= n_iter:
            continue
        alpha = min(-np.linalg.norm(r) / np.linalg.norm(v), -1.0)
        ext = theta0 - 2 * alpha * r + alpha**2 * v
        ext[p:] = np.maximum(ext[p:], log_floor)
        if not np.isfinite(ext).all():
            continue
        t3, b3, ev_ext = em_map(ext, b2)
        if np.isfinite(ev_ext) and ev_ext >= ev1 and np.isfinite(t3).all():
            theta, beta = t3, b3
    return theta[:p], np.exp(theta[p:]), converged


class DifficultyRouter(BaseRouter):
    """Item-response router: shared prompt factors from known LLMs, a logistic profile per model.

    Parameters
    ----------
    n_factors : int, default=8
        At most r shared prompt factors learned from the training LLMs (also capped by their number;
        0 keeps only the clusters). A cap, not a tuning knob: the empirical-Bayes prior shrinks the
        factors that do not separate the known models, so 3 to 16 behave alike on the shared data.
    n_clusters : int, default=0
        K-means clusters added as one-hot features (0 = none).
    cost_weight : float, default=0.0
        Default lambda for :meth:`route`.
    embedder : Embedder, str, callable or None, default=None
        None = all-MiniLM-L6-v2, offline.
    random_state : int or None, default=None
        Seeds K-means.
    n_init : int, default=3
        K-means restarts.
    em_iter : int, default=50
        Empirical-Bayes (EM) iterations for the prior.
    prior_folds : int, default=5
        Folds of the training prompts for the out-of-fold factor values the prior is estimated on
        (each fold's values come from a ridge fitted without it). 0 estimates the prior on the
        training LLMs' validation labels alone (narrower, worse when S_val is small); so does a
        training set of fewer than ``2 * prior_folds`` prompts.

    Attributes
    ----------
    factors_ : ndarray (D, r)        W, the factor directions (already scaled)
    embedding_mean_ : ndarray (D,)
    centroids_ : ndarray (K, D)      (K = 0: shape (0, D))
    prior_mean_, prior_var_ : ndarray (P,)   the empirical-Bayes prior over a model's coefficients
                                     (intercept variance at least 2.5^2, see ``fit``)
    prior_converged_ : bool          whether the prior's EM met its tolerance within ``em_iter``
    ridge_alpha_ : float             the GCV ridge penalty
    validation_labels_ : ndarray (n_val,)   cluster of each validation prompt (zeros when K = 0)

    Examples
    --------
    >>> router = DifficultyRouter(random_state=0).fit(
    ...     embeddings=x_train, validation_embeddings=x_val,
    ...     train_correctness=y_train, validation_correctness=y_train_val)
    >>> router.add_model("new", correctness=scores_on_val, cost=0.002)   # a P-parameter fit, no refit
    >>> router.route(embedding=x, cost_weight=10.0).model
    """

    def __init__(
        self,
        n_factors: int = 8,
        *,
        n_clusters: int = 0,
        cost_weight: float = 0.0,
        embedder: Any = None,
        random_state: int | None = None,
        n_init: int = 3,
        em_iter: int = 50,
        prior_folds: int = 5,
    ) -> None:
        self.n_factors = n_factors
        self.n_clusters = n_clusters
        self.cost_weight = cost_weight
        self.embedder = embedder
        self.random_state = random_state
        self.n_init = n_init
        self.em_iter = em_iter
        self.prior_folds = prior_folds

    def _check_params(self) -> None:
        super()._check_params()  # cost_weight, embedder
        for name, low in (
            ("n_factors", 0),
            ("n_clusters", 0),
            ("n_init", 1),
            ("em_iter", 1),
            ("prior_folds", 0),
        ):
            check_int(getattr(self, name), name, low=low)
        if self.prior_folds == 1:
            msg = "prior_folds must be 0 (prior from the validation labels only) or >= 2. Got 1."
            raise InvalidInputError(msg)
        check_random_state(self.random_state)

    # -- fitting -------------------------------------------------------------------------------
    def fit(
        self,
        prompts: Sequence[str] | None = None,
        *,
        validation: ValidationSet | Sequence[str] | None = None,
        embeddings: Any = None,
        validation_embeddings: Any = None,
        train_correctness: Any = None,
        validation_correctness: Any = None,
        train_cost: Any = None,
    ) -> DifficultyRouter:
        """Learn the prompt factors and the prior from known LLMs. Registered models are cleared.

        Parameters
        ----------
        prompts : list of str
            Training prompts S_tr (or give ``embeddings``).
        validation : ValidationSet or list of str
            The validation prompts new models are profiled on (or give ``validation_embeddings``).
        embeddings, validation_embeddings : array (n, D), optional
            Precomputed embeddings of the same prompts.
        train_correctness : array (n_tr, M_train)
            Quality in [0, 1] of the known LLMs on the training prompts (NaN = missing).
        validation_correctness : array (n_val, M_train)
            The same LLMs on the validation prompts (gives the empirical-Bayes prior).
        train_cost : array (n_tr, M_train), optional
            Per-query costs of the known LLMs on the training prompts: learns a per-prompt cost shape.

        Returns
        -------
        self
        """
        self._check_params()
        x, vs, xv = self._training_inputs(prompts, embeddings, validation, validation_embeddings)
        ytr, yval = check_known_labels(
            train_correctness, validation_correctness, x.shape[0], xv.shape[0], needed_by="DifficultyRouter.fit"
        )

        # Shared prompt factors: principal directions of the ridge-predicted training correctness.
        centred = ytr - np.nanmean(ytr, axis=0)
        centred = np.where(np.isnan(centred), 0.0, centred)
        gram = _gram(x)
        xm = gram[0]
        coef, _, alpha = ridge_gcv(x, centred, gram=gram)
        r = min(int(self.n_factors), coef.shape[1])
        basis, scale = _factor_basis(gram[1], coef, r)
        self.n_factors_ = int(r)
        self.embedding_mean_ = xm.astype(np.float32)
        self.factors_ = (coef @ basis / scale).astype(np.float32)
        self.ridge_alpha_ = alpha

        k = int(self.n_clusters)
        if k > 0:
            self.centroids_ = fit_kmeans(
                x, k, random_state=self.random_state, n_init=int(self.n_init)
            )
            self._kmap: KMeansMap | None = KMeansMap(self.centroids_)
            labels = self._kmap.assign(xv)
        else:
            self.centroids_ = np.zeros((0, x.shape[1]), dtype=np.float32)
            self._kmap = None
            labels = np.zeros(xv.shape[0], dtype=np.int64)

        # The prior over a model's coefficients, where the factors are out of sample (as for a new model).
        fv = self._features(xv)
        prior_x, prior_y = fv, yval
        if self.prior_folds and r and x.shape[0] >= 2 * self.prior_folds:
            z_tr = _out_of_fold_factors(x, centred, basis, scale, int(self.prior_folds), self.random_state)
            prior_x = np.vstack([self._features(x, z=z_tr), fv])
            prior_y = np.vstack([ytr, yval])
        self.prior_mean_, self.prior_var_, self.prior_converged_ = _empirical_bayes_prior(
            prior_x, prior_y, int(self.em_iter)
        )
        if not self.prior_converged_:
            warnings.warn(
                f"the empirical-Bayes prior did not converge in em_iter={self.em_iter} EM iterations; the last "
                "iterate is used (every one is a valid prior). Raise em_iter if profiles look over-shrunk.",
                ConvergenceWarning,
                stacklevel=2,
            )
        # The level (intercept) of a new model is not shrunk toward the known models' levels more than a
        # weakly informative prior would (sd 2.5 on the logit scale, Gelman et al. 2008): new models are
        # often much stronger than the pool the router was built with (issue 15), and a level pulled
        # toward the known ones compresses the differences between the strong new models.
        self.prior_var_[0] = max(float(self.prior_var_[0]), _INTERCEPT_VAR_MIN)

        self.cost_coef_ = np.zeros(0, dtype=np.float32)
        self.cost_intercept_ = 0.0
        if train_cost is not None:
            self._fit_cost_shape(x, train_cost)
        self._val_features = fv
        self._val_cost_scale = (
            float(np.mean(self._cost_shape(xv))) if self.cost_coef_.size else 1.0
        )
        self._finish_fit(vs, xv, labels, fv.shape[1])
        return self

    def _fit_cost_shape(self, x: np.ndarray, train_cost: Any) -> None:
        c = np.asarray(train_cost, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] != x.shape[0]:
            msg = f"train_cost must have shape ({x.shape[0]}, M_train). Got {c.shape}."
            raise InvalidInputError(msg)
        with np.errstate(divide="ignore", invalid="ignore"):
            logc = np.where(c > 0, np.log(np.where(c > 0, c, 1.0)), np.nan)
            logc -= np.nanmean(logc, axis=0)
            target = np.nanmean(logc, axis=1)
        ok = ~np.isnan(target)
        if ok.sum() < 2:
            warnings.warn(
                "train_cost has no positive costs; the cost shape is not used.",
                UniRouterWarning,
                stacklevel=3,
            )
            return
        coef, xm, _ = ridge_gcv(x[ok], target[ok, None])
        self.cost_coef_ = coef[:, 0].astype(np.float32)
        self.cost_intercept_ = float(target[ok].mean() - xm @ coef[:, 0])

    # -- features ------------------------------------------------------------------------------
    def _features(self, x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """``[1, z(x), onehot_K(x)]``; ``z`` overrides the factor values (out-of-fold ones)."""
        n = x.shape[0]
        parts = [np.ones((n, 1)), (x - self.embedding_mean_) @ self.factors_ if z is None else z]
        if self._kmap is not None:
            onehot = np.zeros((n, self._kmap.n_clusters))
            onehot[np.arange(n), self._kmap.assign(x)] = 1.0
            parts.append(onehot)
        return np.hstack(parts)

    def _cost_shape(self, x: np.ndarray) -> np.ndarray:
        if not self.cost_coef_.size:
            return np.ones(x.shape[0])
        return np.exp(np.clip(x @ self.cost_coef_ + self.cost_intercept_, -20, 20))

    # -- profiles ------------------------------------------------------------------------------
    def build_profile(
        self,
        name: str,
        correctness: Any,
        *,
        cost: float | Sequence[float] | np.ndarray,
        stats: ProfilingStats | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ModelProfile:
        """A profile whose ``cluster_error`` holds the model's coefficients ``beta_h (P,)``.

        ``beta_h`` is the MAP logistic fit of the model's validation scores on the validation
        features under the fitted prior; nothing shared changes.
        """
        profile = super().build_profile(
            name, correctness, cost=cost, stats=stats, metadata=metadata
        )
        beta, _ = fit_logistic_map(
            self._val_features,
            profile.scores[:, None],
            self.prior_mean_,
            self.prior_var_,
        )
        return profile.model_copy(
            update={
                "cluster_error": beta[0],
                "cluster_cost": np.full(self.n_parts_, profile.cost_per_query),
            }
        )

    @classmethod
    def pretrained(cls, **kwargs: Any) -> DifficultyRouter:
        """The bundled pre-trained DifficultyRouter (offline): see
        :func:`unirouter.pretrained.load_pretrained` for ``models=``, ``embedder=``, ``cost_weight=``."""
        from unirouter.pretrained import load_pretrained

        return load_pretrained("difficulty", **kwargs)

    # -- prediction ----------------------------------------------------------------------------
    def _fitted_attribute(self) -> str:
        return "prior_mean_"

    def _weights(self, x: np.ndarray) -> np.ndarray:
        return self._features(x)

    def _gamma_cost(self, x, psi, cost):
        f = self._features(x)
        gamma = 1.0 - _sigmoid(f @ psi.T)
        shape = self._cost_shape(x) / self._val_cost_scale
        expected = shape[:, None] * cost[:, 0][None, :]
        w = f[:, 1 + self.factors_.shape[1] :] if self._kmap is not None else None
        return gamma, expected, w

    # -- persistence ---------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {
            "embedding_mean": self.embedding_mean_,
            "factors": self.factors_,
            "centroids": self.centroids_,
            "prior_mean": self.prior_mean_,
            "prior_var": self.prior_var_,
            "val_features": self._val_features,
            "cost_coef": self.cost_coef_,
            "prior_converged": np.array([self.prior_converged_]),
            "scalars": np.array(
                [self.ridge_alpha_, self.cost_intercept_, self._val_cost_scale]
            ),
        }

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.embedding_mean_ = arrays["embedding_mean"].astype(np.float32)
        self.factors_ = arrays["factors"].astype(np.float32)
        self.n_factors_ = int(self.factors_.shape[1])
        self.centroids_ = arrays["centroids"].astype(np.float32)
        self._kmap = KMeansMap(self.centroids_) if self.centroids_.shape[0] else None
        self.prior_mean_ = arrays["prior_mean"].astype(np.float64)
        self.prior_var_ = arrays["prior_var"].astype(np.float64)
        self._val_features = arrays["val_features"].astype(np.float64)
        self.cost_coef_ = arrays["cost_coef"].astype(np.float32)
        self.prior_converged_ = bool(arrays["prior_converged"][0]) if "prior_converged" in arrays else True
        self.ridge_alpha_, self.cost_intercept_, self._val_cost_scale = (
            float(v) for v in arrays["scalars"]
        )
