"""Ravi & Larochelle's episode configurations, shared by the benchmarks
(no TensorFlow or PyTorch import: the PyTorch reference uses it too).

shots -> (inner steps, inner batch size); 5-way, 15 queries per class, a
32-filter Conv-4 learner.
"""

INNER = {1: (12, 5), 5: (8, 25)}
WAY, QUERIES, FILTERS = 5, 15, 32


def inner(shots: int) -> tuple[int, int]:
  if shots not in INNER:
    raise SystemExit(f"--shots: {shots} is not a Ravi configuration; use "
                     f"one of {sorted(INNER)}.")
  return INNER[shots]
