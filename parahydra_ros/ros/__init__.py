"""The ROS 2 layer: nodes, message conversion and synchronization; thin, over the ROS-free core."""
