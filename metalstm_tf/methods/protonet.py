"""`protonet`, Prototypical Networks (Snell et al. 2017, Prototypical
Networks for Few-shot Learning): its options and registration. The network
is `protonet_model.ProtoNet`, imported (with TensorFlow) when it is built."""

import dataclasses

from metalstm_tf.methods.registry import MethodSpec, register


@dataclasses.dataclass(frozen=True)
class ProtoNetOptions:
  """Prototypical Networks have no options beyond the general ones."""


def build(options: ProtoNetOptions, learner, config):
  from metalstm_tf.learners.conv4 import Conv4Learner
  from metalstm_tf.methods.protonet_model import ProtoNet
  if not isinstance(learner, Conv4Learner):
    raise ValueError("--method=protonet classifies images: it needs "
                     "--dataset=omniglot or --dataset=mini_imagenet, not "
                     f"{config.dataset}.")
  return ProtoNet(learner)


SPEC = register(MethodSpec(
    name="protonet", options=ProtoNetOptions, build=build,
    summary="Prototypical Networks: class means of a meta-learned Conv-4 "
            "embedding, no inner loop (Snell et al. 2017)",
    config_defaults=lambda dataset, shots: {"filters": 64}))
