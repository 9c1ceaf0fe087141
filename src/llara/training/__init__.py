"""Tuning a LLaRA model: the accelerate loop, prompt-mode schedules, batching, checkpoints, objectives.

Lives here: ``loop`` (``train``: the training run, its steps, exact resume, export), ``setup`` (accelerator
and precision, attention kernel, objective choice, optimizer and LR schedule), ``rows`` (which rows a run
trains on), ``validation`` (validation loss and HR@1), ``metrics_log`` (writing and cutting back
``metrics.jsonl``), ``resume`` (the fingerprint a resume compares), ``schedules``
(curriculum / direct / two-stage as pure functions of the global step), ``batching`` (length-grouped
micro-batches as a pure function of seed and epoch), ``checkpointing`` (atomic checkpoints with optimizer,
scheduler and RNG state), ``outputs`` (what a training folder holds, the log keys, the fields that do not
change the trained model; light, for readers of finished runs).

May import: ``llara.llm``, ``llara.evaluation`` (validation metrics), ``llara.data``, ``llara.sr`` and the
top-level modules; never ``llara.serving`` or ``llara.pipeline``.
"""
