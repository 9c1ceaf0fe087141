"""Scoring a model on a split: prompt prefill, greedy generation, likelihood ranking, answer matching.

Lives here: ``inference`` (one left-padded prompt pass keeping the KV cache; loading an export),
``generation`` (batch-size independent greedy decoding), ``constrained`` (decoding restricted to the
candidates' answers by a prefix trie), ``ranking`` (every candidate's answer log-likelihood behind one cached
prompt), ``matching`` (the authors' substring rule and the strict rule), ``evaluate`` (the protocols over a
split, sharded across processes, and their metrics), ``predictions`` (per-batch answers, matches and ranks),
``outputs`` (predictions.parquet and metrics.json, and the output folder's checks).

May import: ``llara.llm``, ``llara.data``, ``llara.sr`` and the top-level modules.
"""
