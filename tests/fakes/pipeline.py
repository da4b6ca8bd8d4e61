"""The day's pipeline for synchronous tests, with asyncio.run as the CLI does."""

from __future__ import annotations

import asyncio
from typing import Any

from digestbot.config import Settings
from digestbot.enrich import pipeline
from digestbot.store import Store


def run_pipeline(settings: Settings, store: Store, **options: Any) -> pipeline.PipelineReport:
    return asyncio.run(pipeline.run_pipeline(settings, store, **options))
