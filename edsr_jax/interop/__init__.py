"""Other frameworks' files: official EDSR-PyTorch state dicts in (``torch.py``).

torch is imported only when a file is read.
"""
