"""Backbones: pretrained, usually frozen, encoders for one modality, registered by name.

The interface is `omnibind.backbones.base.Backbone`; families register factories by name with
`register` (exact names like `minilm`, or prefixes like `hf:` that take an argument). Families are
found through the `omnibind.backbones` entry-point group (the package declares its own there, and
a third-party package can add more), and are imported only when a reference names them.
"""

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import default_modality, known, load_backbone, register, unregister

__all__ = ["Backbone", "Features", "register", "unregister", "load_backbone", "default_modality", "known"]
