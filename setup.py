"""pip install of the parahydra_ros Python package, for users who only want the
codec and the tools (no ROS 2 build). ROS 2 users build with colcon instead
(CMakeLists.txt), which also generates the CompressedLatent message."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def pinned(group: str) -> list[str]:
    """The requirements.txt lines tagged ``# [group]``: versions are pinned there only."""
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if re.search(rf"#\s*\[{group}\]", line)]


setup(
    name="parahydra-ros",
    version="0.1.0",
    description="ParaHydra distributed multi-view image compression for multi-camera robots (ROS 2)",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["parahydra_ros", "parahydra_ros.*"]),
    package_data={"parahydra_ros": ["weights/*.pt", "weights/*.md", "weights/*.png"]},
    # The message definition, where rosbag tools look for it without a ROS install.
    data_files=[("share/parahydra_ros/msg", ["msg/CompressedLatent.msg"])],
    install_requires=pinned("core"),
    extras_require={"eval": pinned("eval"), "test": pinned("test"), "ros": pinned("ros")},
    entry_points={
        "console_scripts": [
            "parahydra = parahydra_ros.cli:main",
            "encoder_node = parahydra_ros.ros.encoder_node:main",
            "decoder_node = parahydra_ros.ros.decoder_node:main",
            "camera_replay_node = parahydra_ros.ros.camera_replay_node:main",
        ]
    },
)
