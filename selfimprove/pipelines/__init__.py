"""Experiment specs (YAML) compiled into Dagster asset graphs, jobs and checks."""
