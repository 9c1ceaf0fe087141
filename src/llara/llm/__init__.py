"""The language model side of LLaRA: base-model loading, prompts, the LLaRA model and its export.

Lives here: ``loader`` (resolve ``smollm2`` or a path / hub id to a causal LM and tokenizer), ``prompts``
(templates, prompt modes, placeholder tokens), ``model`` (``LlaraModel``, composing the pieces below),
``evidence`` (SR backbones, projectors, behavioral token injection), ``adapter`` (LoRA / MoE-LoRA),
``tokens`` (placeholder tokens, tokenisation and padding), ``heads`` (answer scores, verdicts, the SR
prior's scores), ``export`` (export save / load / verification), ``precision`` (``auto`` precision: bf16
where the device computes it natively, the inference autocast).

May import: ``llara.config``, ``llara.errors``, ``llara.paths``, ``llara.data``, ``llara.sr``.
"""
