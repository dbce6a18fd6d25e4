"""The models, backends and precisions by name: what the CLI offers, without torch."""

MODEL_NAMES = ("ge2e", "rf5-gru", "wespeaker-resnet34")
BACKENDS = ("auto", "torch", "mlx")
PRECISIONS = ("fp32", "fp32-onnx", "int8")  # fp32-onnx: fp32 on onnxruntime
