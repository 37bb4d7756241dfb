"""Deployment tooling: recipe validation, accessControl from config models, component registry.

Used by ``ggvision recipe validate``, ``tools/build_components.py``, the contract tests and the CDK
app (``cdk/``). Nothing here talks to AWS.
"""
