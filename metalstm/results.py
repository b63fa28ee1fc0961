"""The RESULT line: the parseable summary a run prints and writes to
`result.txt`, and its parser (no flags: scripts may import it)."""


def result_line(config, metric: str, split: str, result: dict,
                queries: str = "transductive", cross=None) -> str:
  """The parseable summary; `cross`: (test dataset, adapter description)
  of a cross-domain test."""
  digits = 2 if metric == "accuracy" else 5
  line = (f"RESULT dataset={config.dataset} ways={config.way} "
          f"shots={config.shot} split={split} metric={metric} "
          f"mean={result['mean']:.{digits}f} ci95={result['ci95']:.{digits}f} "
          f"episodes={result['episodes']} method={config.method} "
          f"queries={queries}")
  if cross is not None:
    line += f" test_dataset={cross[0]} adapter={cross[1]}"
  return line


def parse_result_line(line: str) -> dict:
  """`key=value` fields of a RESULT line."""
  return dict(f.split("=", 1) for f in line.split()[1:])
