"""Conventional sequential recommenders (SASRec, GRU4Rec, Caser) behind one interface.

``base`` (interface, padding), one module per model, ``registry`` (names -> classes), ``checkpoint``
(safetensors + config.json), ``samples`` (a prepared split as tensors), ``train`` (CE, BCE or gBCE, early stopping,
resume, L2 grid), ``evaluate`` (ranks and metrics), ``seeds`` (several seeds, mean and std),
``stack`` (several frozen backbones read as one source of evidence) and
``authors`` (safe import of the LLaRA authors' pickled checkpoints). Import the submodules directly;
this package imports nothing heavy.
"""
