"""The component runner: what ``ggvision core run`` does with recipes, like a Nucleus would.

``recipe`` (load, normalise, pick the manifest) -> ``resolve`` (dependency closure and order) ->
``configuration`` (defaults + MERGE/RESET) -> ``artifacts`` (stage, safe unzip) into the
``layout`` -> ``runner`` (the state machine; its steps' scripts and env in ``_steps``, placeholders
via ``variables``, the Nucleus's variables from ``ggvision.core.environment``; processes in
``_processes`` over ``process``; Install once in ``_install``). ``admin_client`` and ``allow``
serve ``core exec``; ``monitor`` is ``core run --watch``.
"""
