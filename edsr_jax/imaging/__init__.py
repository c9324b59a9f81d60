"""Pixels and image files, no model: MATLAB-exact resizing, PSNR/SSIM, reading and writing files.

``resize.py`` (``imresize``, ``downscale``, ``modcrop``), ``metrics.py`` (the scoring protocol),
``files.py`` (the one image reader and writer). This folder imports no other folder of the package.
"""
