"""Meta-train, test and export a few-shot learner (default: the
Meta-Learner LSTM), from a checkout:

  python main.py --dataset=omniglot --shots=1 [--method=NAME]

the same program as the installed `metalstm` command (`metalstm/cli.py`;
`--help` lists the flags).
"""

from metalstm import cli

if __name__ == "__main__":
  cli.run()
