"""Evaluation: quality and rate metrics, Bjøntegaard deltas, classical anchors, RD curves.

``metrics`` (PSNR, MS-SSIM, bpp), ``bjontegaard`` (BD-rate, BD-PSNR), ``anchors``
(JPEG, WebP, AVIF, HEVC, AV1 and VVC behind one interface, registry ``ANCHORS``),
``yuv`` (the one RGB <-> YCbCr conversion the video anchors use) and ``rd``
(rate-distortion points over image sets, rate at a target PSNR). Nothing here
imports ROS.
"""
