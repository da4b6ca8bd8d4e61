"""Where papers come from: arXiv's listing pages, RSS feed, API and PDFs."""
