"""The PyTorch port's meta-training step, timed on this machine.

  pip install torch==2.13.0      # not a dependency of this project
  python benchmarks/pytorch_reference.py

The issue compares our speed with "the widely used PyTorch port"
(github.com/markdtw/meta-learning-lstm-pytorch), measured on another machine.
This script times the same computation as that port's meta-training step on
this machine, so the two implementations can be compared on one CPU. It is
written here from the port's description (not a copy of its code), with the
port's structure:

  * the learner is an `nn.Module` Conv-4 (conv, BatchNorm2d in training mode,
    ReLU, max-pool; linear classifier); at every inner step the flat
    parameters c_t are copied into it, it runs forward and `backward()`, and
    its `.grad`s are concatenated into a detached flat gradient (first order);
  * the meta-learner is `nn.LSTMCell(4, 20)` over all coordinates (a batch
    of P rows of [preprocessed loss, preprocessed gradient]) followed by the
    meta cell c_t = sigmoid(f) * c_{t-1} - sigmoid(i) * grad with
    f, i = [h_t, c_{t-1}, f/i_{t-1}] W + b;
  * the query loss of the learner with parameters c_T (a functional call)
    is back-propagated into the meta-learner, its gradient clipped (norm
    0.25) and Adam (1e-3) applied.

Data are random tensors of the episode's shapes, as our benchmark feeds
pre-fetched episodes. Prints episodes per second for Omniglot and
mini-ImageNet 5-way K-shot (Ravi config, `ravi.py`: 32 filters, 1-shot 12
inner steps of batch 5, 5-shot 8 of batch 25, 15 queries per class), with 2
threads. `benchmarks/training_speed.py` runs it beside this project's step.
"""

import itertools
import math
import statistics
import time

from absl import app
from absl import flags

import ravi

flags.DEFINE_integer("steps", 20, "Timed meta-training episodes per round.")
flags.DEFINE_integer("rounds", 1, "Timed rounds per setting; the median "
                     "round is reported (robust to a busy shared machine).")
flags.DEFINE_integer("threads", 2, "torch.set_num_threads.")
flags.DEFINE_list("datasets", ["omniglot", "mini_imagenet"], "Datasets.")
flags.DEFINE_list("shots", ["1"], "Shots per class (1, 5: Ravi configs).")
FLAGS = flags.FLAGS

SHAPES = {"omniglot": (1, 28), "mini_imagenet": (3, 84)}


def main(argv):
  del argv
  try:
    import torch
    from torch import nn
  except ImportError as e:
    raise SystemExit("This benchmark needs PyTorch: pip install "
                     "torch==2.13.0 (not a dependency of the project).") from e
  torch.set_num_threads(FLAGS.threads)
  torch.manual_seed(0)

  def conv4(channels, size, way=5, filters=32):
    layers, c = [], channels
    for _ in range(4):
      layers += [nn.Conv2d(c, filters, 3, padding=1),
                 nn.BatchNorm2d(filters, eps=1e-3, momentum=0.95), nn.ReLU(),
                 nn.MaxPool2d(2)]
      c = filters
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(filters * (size // 16) ** 2, way))

  def log_and_sign(x, p=10.0):
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, x.abs().clamp_min(math.exp(-p)).log() / p,
                        -torch.ones_like(x))
    second = torch.where(big, x.sign(), math.exp(p) * x)
    return torch.stack([first, second], 1)

  class MetaLearner(nn.Module):

    def __init__(self, flat):
      super().__init__()
      self.lstm = nn.LSTMCell(4, 20)
      self.w_f = nn.Parameter(torch.empty(22, 1).uniform_(-0.01, 0.01))
      self.w_i = nn.Parameter(torch.empty(22, 1).uniform_(-0.01, 0.01))
      self.b_f = nn.Parameter(torch.empty(1, 1).uniform_(4, 6))
      self.b_i = nn.Parameter(torch.empty(1, 1).uniform_(-5, -4))
      self.c0 = nn.Parameter(flat.detach().clone().unsqueeze(1))

    def forward(self, loss, grad, state):
      h_c, f, i, c = state
      x = torch.cat([log_and_sign(loss.reshape(1)).expand(grad.shape[0], 2),
                     log_and_sign(grad)], 1)
      h, cell = self.lstm(x, h_c)
      f = torch.cat([h, c, f], 1) @ self.w_f + self.b_f
      i = torch.cat([h, c, i], 1) @ self.w_i + self.b_i
      c = torch.sigmoid(f) * c - torch.sigmoid(i) * grad.unsqueeze(1)
      return c, ((h, cell), f, i, c)

  for dataset, shots in itertools.product(FLAGS.datasets, FLAGS.shots):
    shots = int(shots)
    inner_steps, inner_batch = ravi.inner(shots)
    channels, size = SHAPES[dataset]
    learner = conv4(channels, size)
    names = [n for n, _ in learner.named_parameters()]
    shapes = [p.shape for p in learner.parameters()]
    sizes = [p.numel() for p in learner.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in learner.parameters()])
    meta = MetaLearner(flat0)
    opt = torch.optim.Adam(meta.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def unflatten(flat):
      return {n: t.reshape(s) for n, t, s in
              zip(names, torch.split(flat, sizes), shapes)}

    def episode():
      xs = torch.randn(ravi.WAY * shots, channels, size, size)
      ys = torch.arange(ravi.WAY * shots) % ravi.WAY
      xq = torch.randn(ravi.WAY * ravi.QUERIES, channels, size, size)
      yq = torch.arange(ravi.WAY * ravi.QUERIES) % ravi.WAY
      n = meta.c0.shape[0]
      zeros = torch.zeros(n, 1)
      state, c = (None, zeros, zeros, meta.c0), meta.c0
      for step in range(inner_steps):
        first = step * inner_batch % len(xs)
        batch = slice(first, first + inner_batch)
        with torch.no_grad():  # copy c_t into the learner
          for p, t in zip(learner.parameters(), torch.split(c.squeeze(1),
                                                            sizes)):
            p.copy_(t.reshape(p.shape))
        learner.zero_grad()
        loss = loss_fn(learner(xs[batch]), ys[batch])
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in learner.parameters()])
        c, state = meta(loss.detach(), grad.detach(), state)
      out = torch.func.functional_call(learner, unflatten(c.squeeze(1)), (xq,))
      query_loss = loss_fn(out, yq)
      opt.zero_grad()
      query_loss.backward()
      nn.utils.clip_grad_norm_(meta.parameters(), 0.25)
      opt.step()
      return query_loss.item()

    episode()
    rounds = []
    for _ in range(FLAGS.rounds):
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        episode()
      rounds.append((time.perf_counter() - start) / FLAGS.steps)
    seconds = statistics.median(rounds)
    print(f"pytorch reference {dataset} 5-way {shots}-shot: "
          f"{1 / seconds:.2f} "
          f"episodes/s ({seconds * 1e3:.0f} ms per episode, "
          f"{sum(sizes)} learner parameters, {FLAGS.threads} threads)",
          flush=True)


if __name__ == "__main__":
  app.run(main)
