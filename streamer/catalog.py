"""The models, backends and precisions by name: what the CLI offers, without torch."""

MODEL_NAMES = ("ge2e", "rf5-gru", "wespeaker-resnet34")
BACKENDS = ("auto", "torch", "mlx")
PRECISIONS = ("fp32", "int8")
