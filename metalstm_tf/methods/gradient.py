"""Methods that adapt a learner with an update rule fed its gradients.

The meta-learner LSTM and its variants, MAML, Meta-SGD and TURTLE are all
this: a learner with a functional forward pass, an `UpdateRule` owning the
learned initialisation (and whatever else is learned), and the inner loop of
`inner_loop.adapt`.
"""

import contextlib


from metalstm_tf import inner_loop
from metalstm_tf.methods.base import EpisodeOutput, Method
from metalstm_tf.update_rules.base import UpdateRule


class GradientMethod(Method):
  """Args:
    learner: the learner.
    rule: the update rule (holds c_0 and the rule's meta-parameters).
    inner_steps, inner_batch_size: the inner loop.
    second_order: differentiate through the learner's gradients.
  """

  uses_gradients = True
  supports_step_outputs = True

  def __init__(self, learner, rule: UpdateRule, inner_steps: int,
               inner_batch_size: int, second_order: bool, **kwargs):
    super().__init__(learner, **kwargs)
    self.rule = rule
    self.inner_steps, self.inner_batch_size = inner_steps, inner_batch_size
    self._second_order = bool(second_order)

  @property
  def second_order(self) -> bool:
    return self._second_order

  def adapt(self, support_x, support_y, keep_trajectory=False):
    return inner_loop.adapt(self.learner, self.rule, support_x, support_y,
                            self.inner_steps, self.inner_batch_size,
                            self._second_order, keep_trajectory)

  def run(self, support_x, support_y, query_x, keep_steps=False,
          transductive=True):
    result = self.adapt(support_x, support_y, keep_trajectory=keep_steps)
    return self._predict(result, support_x, query_x, transductive)

  def run_both(self, support_x, support_y, query_x):
    # The inner loop reads the support set alone: one adaptation serves both.
    result = self.adapt(support_x, support_y)
    return {"per_query": self._predict(result, support_x, query_x, False),
            "transductive": self._predict(result, support_x, query_x, True)}

  def _predict(self, result, support_x, query_x, transductive):
    """The queries' predictions after adaptation `result` (and after each
    of its steps, if it kept its trajectory)."""
    reference = None if transductive else support_x
    predict = lambda theta: self.learner.apply_theta(theta, query_x, reference)
    steps = [predict(t) for t in result.trajectory]
    outputs = steps[-1] if steps else predict(result.theta)
    return EpisodeOutput(outputs=outputs, step_outputs=steps,
                         traces=result.gates)

  def unadapted_outputs(self, query_x):
    return self.learner.apply_theta(self.rule.initial_theta(), query_x)

  def summaries(self):
    return self.rule.summaries(self.learner.layout)

  def trackables(self):
    # The rule alone holds the meta-parameters; "rule" is the checkpoint key
    # runs have always used.
    return {"rule": self.rule}

  @property
  def trace_size(self):
    return self.rule.num_params if self.rule.has_gates else 0

  def trace_names(self, indices):
    names, offsets = [], self.learner.layout.offsets()
    for coord in indices:
      for name, (start, stop) in offsets.items():
        if start <= coord < stop:
          names.append(f"{name.split('/')[-1]}[{coord - start}]")
    return names

  @contextlib.contextmanager
  def standard_ops(self):
    with self.rule.standard_ops(), super().standard_ops():
      yield
