"""The effect-handler core: messages, primitives, handlers and traces.

Knows distributions only through ``jsvi._typing.DistributionLike``.
"""
