"""Evaluation tooling: conversation simulation, synthetic voices and scoring.

Used by the ``simulate`` and ``demo`` commands, the benchmarks and the tests; the core
stages (buffer, VAD, worker, tracker, events) never import it.
"""
