"""TFLite models in torch: a flatbuffer reader (:mod:`backbones.tflite.reader`) and a torch rebuild of the graph
(:mod:`backbones.tflite.torch_graph`), checked against the LiteRT runtime (:mod:`backbones.tflite.litert`)."""
