"""``parahydra demo``: the real ROS 2 pipeline over DDS on this machine, measured and shown.

==========  =====================================================================
command     the ``parahydra demo`` sub-command: sources, the printed table, the files
pipeline    one run of the pipeline (node processes, camera replay, collector)
report      what a run measured: per-camera numbers, table, images, the RD plot
==========  =====================================================================

A tool on top of the package: it starts the ROS nodes (``ros/``) through the launcher
(``pipeline/``) and reports with ``eval/``; nothing below imports it. ``bench/pipeline.py``
runs the same ``pipeline.run_pipeline``.
"""
