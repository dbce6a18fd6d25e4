"""The models, backends and precisions by name: what the CLI offers, without torch."""

MODEL_NAMES = ("ge2e", "rf5-gru", "wespeaker-resnet34")
BACKENDS = ("auto", "torch", "mlx")
# fp32-onnx: fp32 on onnxruntime; auto: fp32-onnx where it runs, else fp32 (on torch)
PRECISIONS = ("auto", "fp32", "fp32-onnx", "int8")
