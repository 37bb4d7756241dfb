"""The component runner: what ``ggvision core run`` does with recipes, like a Nucleus would.

``recipe`` (load, normalise, pick the manifest) -> ``resolve`` (dependency closure and order) ->
``configuration`` (defaults + MERGE/RESET) -> ``artifacts`` (stage, safe unzip) into the
``layout`` -> ``runner`` (state machine, processes via ``process``, placeholders via
``variables``, env via ``environment``). ``admin_client`` and ``allow`` serve ``core exec``.
"""
