"""Dagster resources: engines, the LoRA trainer and the warehouse."""
