"""Bitstream container and the high-level encode/decode API (ROS-free)."""
