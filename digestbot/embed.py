"""Local text embeddings: one small static model, loaded from inside its own wheel.

Library profiles, the offline scorer and the per-reader re-ranker all compare papers by
meaning, with no LLM call and no network. wordllama's `l2_supercat_256` weights and tokenizer
config ship in the wordllama wheel; `cache_dir` points its loader at the package folder and
`disable_download=True` keeps a miss from ever turning into a download (its default lookup of
the bundled tokenizer looks elsewhere and would go to Hugging Face). A real title + abstract
embeds in ~1.5 ms of CPU (1,500 papers in ~2 s), so a day's vectors are computed when needed,
once per batch, and never stored.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import wordllama

from digestbot.errors import ConfigError
from digestbot.models import Paper

CONFIG = "l2_supercat"
DIM = 256
# Embedding cost and the model's useful context are both bounded; an abstract fits.
MAX_CHARS = 2000

_lock = threading.Lock()


def _model() -> wordllama.WordLlama:
    # The service embeds on worker threads: the lock is taken before the cache is looked at,
    # so two threads that both find it empty still load the model once.
    with _lock:
        return _load()


@functools.cache
def _load() -> wordllama.WordLlama:
    try:
        return wordllama.WordLlama.load(config=CONFIG, dim=DIM,
                                        cache_dir=Path(wordllama.__file__).parent,
                                        disable_download=True)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ConfigError("嵌入模型无法加载 / embedding model cannot be loaded: "
                          f"{type(exc).__name__}: {exc}") from None


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (an empty text gives a zero row)."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    vectors = _model().embed([t[:MAX_CHARS] for t in texts], norm=True)
    return np.nan_to_num(np.asarray(vectors, dtype=np.float32))


def paper_text(paper: Paper) -> str:
    """What a paper is about, for embedding: its title, then its abstract."""
    return f"{paper.title}\n{paper.abstract}"


def embed_papers(papers: Sequence[Paper]) -> np.ndarray:
    return embed([paper_text(p) for p in papers])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of unit rows: an (len(a), len(b)) matrix."""
    return np.asarray(a @ b.T, dtype=np.float32)
