"""selfimprove: LLM self-improvement (generate, self-verify, filter, distill) as Dagster assets."""

__version__ = "0.1.0"
