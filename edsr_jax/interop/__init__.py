"""Other frameworks' files: torch.save files read without PyTorch (``torch_file.py``), official
EDSR-PyTorch and BasicSR state dicts in and out (``torch.py``), published weights by name
(``published.py``, ``pretrained.py``) and deployment formats (``export.py``, ``onnx.py``).
"""
