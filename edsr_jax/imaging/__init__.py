"""Pixels and image files, no model: MATLAB-exact resizing, PSNR/SSIM, the one image reader and writer."""
