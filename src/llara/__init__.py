"""LLaRA: Large Language-Recommendation Assistant.

An LLM predicts a user's next item from a candidate set; every item in the prompt is its title plus a
behavioral token (a frozen sequential recommender's item embedding mapped into the LLM's embedding
space by a trained projector).
"""

__version__ = "0.1.0"
