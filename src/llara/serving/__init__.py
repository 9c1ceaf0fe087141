"""Recommendations for one history: ``recommend`` (CLI ranking) and ``service`` (the FastAPI app).

May import: ``llara.llm``, ``llara.evaluation``, ``llara.data``, ``llara.sr`` and the top-level modules.
"""
