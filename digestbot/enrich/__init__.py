"""Scoring and enrichment: the offline scorer, the LLM client, and the day's pipeline.

`digestbot enrich` runs the pipeline (score → select → enrich) for one announcement day;
`digestbot score` scores papers against one topic (`one_topic`). Both use the LLM when
OPENAI_API_KEY is set and the offline scorer otherwise.

Nothing is imported here: selecting and rendering a digest read stored scores and
enrichments (`topic_scores`, `stored`) and must not pay for the LLM client's imports (about
a second: openai) in every process that sends.
"""
