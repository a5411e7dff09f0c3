"""What the LangChain and LlamaIndex plugins share, with no framework import: routing options,
the candidate pool (profiling on add, decisions, fallbacks, save/load).

Top layer beside :mod:`unirouter.evaluation`; built on :mod:`unirouter.routers`. The plugins
(``unirouter_langchain``, ``unirouter_llamaindex``) adapt it to their framework and hold no routing math.
"""

from unirouter.integration.pool import CONFIG_KEYS, Candidate, CandidatePool, RoutingOptions

__all__ = ["CONFIG_KEYS", "Candidate", "CandidatePool", "RoutingOptions"]
