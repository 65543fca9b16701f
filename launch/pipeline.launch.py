"""An N-camera ParaHydra pipeline from a YAML of config/: N encoders (one namespace each) and a joint decoder.

    ros2 launch parahydra_ros pipeline.launch.py                       # config/pipeline_3cam.yaml
    ros2 launch parahydra_ros pipeline.launch.py config:=stereo quality:=3 device:=cuda
    ros2 launch parahydra_ros pipeline.launch.py config:=/path/robot.yaml replay:=false

The nodes come from ``parahydra_ros.pipeline.config.load_pipeline``, the same
parser ``parahydra launch`` uses, so both start the same nodes from the same file.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from parahydra_ros.pipeline.config import load_pipeline, parse_overrides

#: Launch arguments: name → (default, description). Empty means "as in the file".
ARGUMENTS = {
    "config": ("pipeline_3cam", "pipeline YAML: a path, or a name in the package's config/ folder"),
    "model": ("", "checkpoint for every node (empty: the file's, else the packaged default model)"),
    "quality": ("", "quality of every camera (empty: the file's)"),
    "device": ("", "device of every node: cpu, cuda, auto (empty: the file's)"),
    "replay": ("", "true/false: start the file's camera replay node (empty: the file's choice)"),
}


def _nodes(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    pipeline = load_pipeline(values.pop("config"), **parse_overrides(**values))
    return [
        Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[spec.parameters],
            remappings=list(spec.remappings),
            output="screen",
            emulate_tty=True,
        )
        for spec in pipeline.nodes
    ]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=_nodes)])
