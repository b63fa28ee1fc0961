"""benchmarks/conv_flops.py: the convolution FLOPs behind the test-time floor
that benchmarks/evaluation_speed.py prints."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import conv_flops  # noqa: E402


def conv4_forward_flops_of_mini_imagenet():
  return conv_flops.conv4_forward_flops(84, 3, 32)


def test_each_block_convolves_the_pooled_size_of_the_one_before():
  # 84 -> 42 -> 21 -> 10 pixels a side; 3 input channels, then 32.
  assert conv4_forward_flops_of_mini_imagenet() == [
      2 * 84 * 84 * 9 * 3 * 32, 2 * 42 * 42 * 9 * 32 * 32,
      2 * 21 * 21 * 9 * 32 * 32, 2 * 10 * 10 * 9 * 32 * 32]


def test_an_evaluation_episode_is_the_inner_passes_and_the_queries_forward():
  layers = conv4_forward_flops_of_mini_imagenet()
  one_support_pass = 3 * sum(layers) - layers[0]  # no input gradient of layer 1
  assert conv_flops.evaluation_episode_flops(84, 3, 32, 8, 25, 75) == (
      8 * 25 * one_support_pass + 75 * sum(layers))
  # The paper's 5-shot test episode: about 34.5 GFLOP of convolutions.
  assert round(conv_flops.evaluation_episode_flops(
      84, 3, 32, 8, 25, 75) / 1e8) == 345
  # No inner step: the queries' forward pass alone.
  assert conv_flops.evaluation_episode_flops(28, 1, 64, 0, 5, 10) == (
      10 * sum(conv_flops.conv4_forward_flops(28, 1, 64)))


def test_a_training_episode_adds_the_queries_backward_pass():
  layers = conv4_forward_flops_of_mini_imagenet()
  forward_backward = 3 * sum(layers) - layers[0]
  assert conv_flops.training_episode_flops(84, 3, 32, 12, 5, 75) == (
      (12 * 5 + 75) * forward_backward)
  assert (conv_flops.training_episode_flops(84, 3, 32, 8, 25, 75) -
          conv_flops.evaluation_episode_flops(84, 3, 32, 8, 25, 75)) == (
              75 * (forward_backward - sum(layers)))
