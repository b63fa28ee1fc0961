"""Reading a run directory's TensorBoard event files (no flags defined:
every benchmark script may import it)."""

import pathlib


def read_scalars(directory: pathlib.Path) -> dict[str, dict[int, float]]:
  """tag -> {step: value} of every event file in `directory`, files read in
  the order they were written (later values win)."""
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2
  out = {}
  for path in sorted(directory.glob("events.out.tfevents.*"),
                     key=lambda p: (int(p.name.split(".")[3]), p.name)):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.HasField("tensor"):
          array = tf.make_ndarray(value.tensor)
          if array.ndim:  # a histogram
            continue
          number = float(array)
        elif value.HasField("simple_value"):
          number = float(value.simple_value)
        else:
          continue
        out.setdefault(value.tag, {})[int(event.step)] = number
  return out
