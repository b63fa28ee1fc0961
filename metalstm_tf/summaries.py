"""Figures for TensorBoard and PNG files."""

import io

import numpy as np
import tensorflow as tf


def figure_png(fig, dpi: int = 100) -> bytes:
  """Renders a matplotlib figure to PNG bytes and closes it."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
  import matplotlib.pyplot as plt
  plt.close(fig)
  return buf.getvalue()


def gate_figure(traces: dict, names, max_episodes: int = 10) -> bytes:
  """Gate values across the inner steps (the figure of Furrer et al.,
  Meta-Learner LSTM for Few Shot Learning, App. B), one panel per gate.

  Args:
    traces: gate name (e.g. 'input_gate') -> `[episodes, steps, k]` values of
      k tracked learner coordinates.
    names: the k coordinates' names (legend).
    max_episodes: episodes drawn (one thin line each, per coordinate).
  Returns:
    PNG bytes.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(traces), figsize=(5.5 * len(traces), 4),
                           squeeze=False)
  first = next(iter(traces.values()))
  steps = np.arange(1, first.shape[1] + 1)
  colors = plt.cm.tab10(np.linspace(0, 1, first.shape[2]))
  for ax, (title, gates) in zip(axes[0], traces.items()):
    for j, coord in enumerate(names):
      for e in range(min(max_episodes, gates.shape[0])):
        ax.plot(steps, gates[e, :, j], color=colors[j], alpha=0.6, lw=1,
                label=coord if e == 0 else None)
    ax.set_xlabel("inner step")
    ax.set_title(title.replace("_", " "))
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7, loc="best")
  fig.suptitle(f"Gate values across inner steps, "
               f"{min(max_episodes, first.shape[0])} test episodes")
  return figure_png(fig)


def png_to_image(png: bytes) -> tf.Tensor:
  """PNG bytes -> `[1, H, W, 4]` uint8 for `tf.summary.image`."""
  return tf.expand_dims(tf.image.decode_png(png, channels=4), 0)
