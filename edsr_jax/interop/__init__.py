"""Other frameworks' files: PyTorch checkpoints, published weights, SavedModel and ONNX export."""
