"""Tests of ``flashdepth evaluate`` (:mod:`flashdepth.evaluate`)."""
