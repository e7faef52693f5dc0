"""Frozen source models: one registry, one interface (:class:`backbones.base.Backbone`).

``backbones.create(name, **options)`` builds a backbone; ``backbones.names()`` lists the names.
Families register themselves in :mod:`backbones.registry` with one line each.
"""

from backbones.base import Backbone, BackboneOutput, OfflineWeightsError
from backbones.registry import REGISTRY, create, names

__all__ = ["Backbone", "BackboneOutput", "OfflineWeightsError", "REGISTRY", "create", "names"]
