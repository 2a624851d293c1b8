"""Tests of the streaming inference package: predictor, sources, sinks and pipeline."""
