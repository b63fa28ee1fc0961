"""Flags of the modes that use an exported model: `--mode=predict`
(classify a folder of images) and `--mode=evaluate` (its accuracy on a
dataset's fixed episodes)."""

from absl import flags as absl_flags

absl_flags.DEFINE_string("saved_model", None, "--mode=predict, evaluate: "
                         "the exported "
                         "model directory (e.g. pretrained/omniglot_5w1s; "
                         "default: <logdir>/saved_model).")
absl_flags.DEFINE_string("support_dir", None, "--mode=predict: one "
                         "sub-directory of images per class (the same "
                         "number of images, at least one, in each).")
absl_flags.DEFINE_string("query_dir", None, "--mode=predict: the images to "
                         "classify.")
absl_flags.DEFINE_string("predictions", "predictions.csv", "--mode=predict: "
                         "CSV file the predictions are written to.")
absl_flags.DEFINE_enum("invert", "auto", ["auto", "yes", "no"],
                       "--mode=predict: invert the images' gray levels as "
                       "the model's input convention says (auto: unless an "
                       "image is already mostly dark, e.g. Omniglot-style "
                       "white strokes on black), always, or never.")
absl_flags.DEFINE_bool("transductive", False, "--mode=predict: predict the "
                       "queries together, batch norm normalising them with "
                       "their own statistics (the papers' protocol; a "
                       "query's class then depends on the other queries). "
                       "Default: each query on its own.")
absl_flags.DEFINE_enum("eval_split", "val", ["val", "test", "train"],
                       "--mode=evaluate: the split whose fixed episodes "
                       "(those of the model's training seed) are evaluated, "
                       "never augmented; 'train' reads the classes the model "
                       "was trained on, to compare with 'val' (over- or "
                       "under-fitting). --test_episodes episodes for test, "
                       "else --val_episodes; --shots support images per "
                       "class (default: as trained).")
