"""Retrieval editors (RECIPE, MedREK): knowledge encoder, edit memory, prompt injection, training.

The LLM stays frozen; edits live in an edit memory and reach the model as continuous prompts.
Must not touch: model weights, covariance statistics.
"""
