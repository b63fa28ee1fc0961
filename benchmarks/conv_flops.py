"""Floating-point operations of the Conv-4 learner's convolutions.

A lower bound on an episode's time: whatever the implementation, the
convolutions of the inner loop must be computed, and a CPU cannot compute
them faster than its float32 matrix-product rate. Counts are 2 per
multiply-add, of the 3x3 same-padded convolutions only (batch norm, ReLU,
pooling and the linear layer are a few percent on top).
"""


def conv4_forward_flops(size: int, channels: int, filters: int,
                        blocks: int = 4) -> list[int]:
  """Forward FLOPs of each convolution of the Conv-4 learner on one image of
  `size` x `size` x `channels`: block i convolves `size / 2**i` pixels (each
  block's 2x2 max-pool halves the size, rounding down)."""
  flops, c_in = [], channels
  for _ in range(blocks):
    flops.append(2 * size * size * 9 * c_in * filters)
    size, c_in = size // 2, filters
  return flops


def _support_pass(size, channels, filters) -> tuple[int, int]:
  """(forward, forward and backward) FLOPs of one image: backward is the
  filter gradients of every layer and the input gradients of every layer but
  the first, each as costly as the forward convolution."""
  per_layer = conv4_forward_flops(size, channels, filters)
  return sum(per_layer), 3 * sum(per_layer) - per_layer[0]


def evaluation_episode_flops(size: int, channels: int, filters: int,
                             inner_steps: int, inner_batch_size: int,
                             queries: int) -> int:
  """Convolution FLOPs of one evaluation episode: each inner step's forward
  and backward pass on `inner_batch_size` support images, then the forward
  pass of `queries` query images."""
  forward, forward_backward = _support_pass(size, channels, filters)
  return inner_steps * inner_batch_size * forward_backward + queries * forward


def training_episode_flops(size: int, channels: int, filters: int,
                           inner_steps: int, inner_batch_size: int,
                           queries: int) -> int:
  """Convolution FLOPs of one first-order meta-training episode: the inner
  steps as in evaluation, and the queries' forward and backward passes (the
  meta-gradient needs the query loss's gradient to the learner's final
  parameters). Second order adds the inner passes' second derivatives."""
  _, forward_backward = _support_pass(size, channels, filters)
  return (inner_steps * inner_batch_size + queries) * forward_backward
