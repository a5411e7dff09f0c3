"""Turning prompts into unit vectors: the embedder protocol, the offline MiniLM default, the caches.

Lowest layer beside :mod:`unirouter.data`: imports only the foundation modules
(:mod:`unirouter.exceptions`, :mod:`unirouter._validation`). Heavy libraries (torch,
sentence-transformers, onnxruntime) are imported on first use, never here.
"""

from unirouter.embedding.embedders import (
    DEFAULT_MODEL_NAME,
    CallableEmbedder,
    Embedder,
    EmbedderIdentity,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    WordLlamaEmbedder,
    as_embedder,
    default_cache_dir,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "CallableEmbedder",
    "Embedder",
    "EmbedderIdentity",
    "EmbeddingCache",
    "SentenceTransformerEmbedder",
    "WordLlamaEmbedder",
    "as_embedder",
    "default_cache_dir",
]
