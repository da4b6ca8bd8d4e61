"""digestbot: arXiv 每日学术速递 — fetch, score, enrich and deliver arXiv digests."""

__version__ = "0.1.0"
USER_AGENT = f"digestbot/{__version__} (arXiv daily digest bot; +https://github.com/digestbot/digestbot)"
