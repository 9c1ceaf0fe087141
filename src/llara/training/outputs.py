"""What a training run leaves in its out folder, and which settings do not shape the trained model.

The one home of these names: the training loop writes them, the pipeline and its plots read them. This
module imports nothing heavy, so readers of a finished run do not load torch.
"""

from __future__ import annotations

#: the resolved experiment config of the run
CONFIG_FILE = "config.yaml"
#: one JSON line per optimizer step (and per validation)
TRAIN_LOG = "metrics.jsonl"
#: ``step-XXXXXXXX/`` folders (``llara.training.checkpointing``)
CHECKPOINTS_DIR = "checkpoints"
#: the trained model (``LlaraModel.save``)
EXPORT_DIR = "export"
#: TensorBoard event files (``train.tensorboard``)
TENSORBOARD_DIR = "tensorboard"

#: training-log keys that readers of :data:`TRAIN_LOG` rely on: the optimizer step (1-based), the
#: training loss of the step and its prompt mode
STEP_KEY = "step"
LOSS_KEY = "loss"
MODE_KEY = "mode"
#: validation lines (every ``train.eval_every`` steps): answer-token loss and HR@1 (``train.validate_by``)
VAL_LOSS_KEY = "val_loss"
VAL_HR_KEY = "val_hr@1"

#: train-section fields that do not change the trained model: where it is written, how often it is
#: checkpointed, validated and logged. They may change between a run and its resume, and the pipeline
#: does not retrain a variant when only they change.
NON_MODEL_FIELDS = frozenset({"out_dir", "save_every", "eval_every", "eval_rows", "validate_by", "tensorboard"})
#: validation settings: they pick the exported step when ``train.keep_best`` is on
VALIDATION_FIELDS = frozenset({"eval_every", "eval_rows", "validate_by"})


def non_model_fields(keep_best: bool) -> frozenset[str]:
    """:data:`NON_MODEL_FIELDS` of a run; with ``keep_best`` validation decides the export, so it counts."""
    return NON_MODEL_FIELDS - VALIDATION_FIELDS if keep_best else NON_MODEL_FIELDS
