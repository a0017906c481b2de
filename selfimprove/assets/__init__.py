"""One module per stage: each holds the plain function doing the work and the Dagster asset over it."""
