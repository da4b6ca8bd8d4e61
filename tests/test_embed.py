"""The embedding model loads from its wheel with no network and ranks by meaning."""

import socket
import threading
import time

import numpy as np
import pytest

from digestbot import embed
from digestbot.models import Paper


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the embedding model tried to reach the network")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_loads_offline_and_ranks_by_meaning(no_network):
    embed._load.cache_clear()
    query = embed.embed(["post-training of large language models with human preferences"])
    papers = [
        Paper(id="2401.00001", version=1, title="Direct preference optimization revisited",
              abstract="We fine-tune language models on pairwise human preference data "
                       "without a reward model."),
        Paper(id="2401.00002", version=1, title="Dark matter halos of dwarf galaxies",
              abstract="We measure rotation curves of dwarf galaxies to constrain halo cores."),
    ]
    vectors = embed.embed_papers(papers)
    assert vectors.shape == (2, embed.DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = embed.cosine(query, vectors)[0]
    assert sims[0] > sims[1] + 0.1


def test_empty_input_gives_empty_matrix():
    assert embed.embed([]).shape == (0, embed.DIM)


def test_threads_racing_on_first_use_load_the_model_once(monkeypatch):
    """The service embeds on worker threads: two that both find no model load it once."""
    loads = []
    real = embed.wordllama.WordLlama.load
    started = threading.Barrier(4)

    def counted(*args, **kwargs):
        loads.append(threading.get_ident())
        time.sleep(0.2)  # a slow load: the other threads arrive meanwhile
        return real(*args, **kwargs)

    embed._load.cache_clear()
    monkeypatch.setattr(embed.wordllama.WordLlama, "load", counted)

    def first_use():
        started.wait()
        embed.embed(["reinforcement learning from human feedback"])

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
