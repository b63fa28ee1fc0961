"""metalstm: the Meta-Learner LSTM (Ravi & Larochelle 2017) and its family.

Importing the package before TensorFlow turns on TensorFlow's oneDNN CPU
kernels (`TF_ENABLE_ONEDNN_OPTS=1`) unless the environment already says
otherwise. TensorFlow enables them by itself only on some CPUs (those with
AVX-512 VNNI/BF16 or AMX); on an AVX2 CPU they measured 2.2x faster for the
Conv-4 learner at 84x84 (RESULTS.md, speed). Set `TF_ENABLE_ONEDNN_OPTS=0`
to get TensorFlow's own choice.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
