"""Test support shipped with the library: the local IPC core for your own component's tests.

* :mod:`ggvision.testing.harness`: :class:`~ggvision.testing.harness.CoreThread`, a real IPC core
  on a background thread (with its admin socket), and ``pubsub_policy`` for ``accessControl``;
* :mod:`ggvision.testing.agent`: :class:`~ggvision.testing.agent.AgentProcess`, a component
  process driving the unmodified ``GreengrassCoreIPCClientV2`` by JSON lines.

Like httpx's ``MockTransport``: a first-class user of the core's public interface, never a part
of it (the core imports nothing from here). This package imports nothing itself, so that
``python -m ggvision.testing.agent`` starts without loading the core.
"""
