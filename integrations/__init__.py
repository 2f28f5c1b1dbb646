"""Adapters that put a vlogger avatar into agent frameworks.

Each adapter lives in a module of its own and imports its framework there, so this package imports
nothing optional: ``vlogger.integrations.livekit`` needs the ``livekit`` extra
(``pip install "vlogger-runtime[livekit]"``), ``vlogger.integrations.pipecat`` the ``pipecat``
extra. Every adapter drives one :class:`~vlogger.engines.stream.AvatarStream` and keeps its engine
work (motion, rendering) off the framework's event loop.
"""

from __future__ import annotations

__all__: list[str] = []
