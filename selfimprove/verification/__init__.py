"""Verifiers: each method builds prompts for a model to judge samples and parses its output.

A method turns candidates into verification rows (one per candidate x verification index) with the
raw text, a score in [0, 1] and an `ok` flag; `sample_scores` folds rows into one score per sample.
"""

from selfimprove.verification.base import METHODS, Candidate, sample_scores, verify

__all__ = ["METHODS", "Candidate", "sample_scores", "verify"]
