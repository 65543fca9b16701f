"""The package's architecture, checked from its sources: folders are layers, no circles, ROS only in ``ros/``.

The import graph is read with ``ast`` by ``scripts/import_graph.py`` (every import,
inside functions too); ``test_foundation.test_codec_core_imports_without_ros`` imports
every module outside ``ros/`` and ``demo/`` with ROS blocked.
"""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)


@pytest.fixture(scope="module")
def edges():
    return import_graph.graph()


def test_the_graph_sees_lazy_and_relative_imports(edges):
    assert "parahydra_ros.codec.api" in edges["parahydra_ros.cli"]  # inside a function
    assert "parahydra_ros.bagtools.messages" in edges["parahydra_ros.bagtools.compress"]  # from . import
    assert "parahydra_ros.model.latent_codec" in edges["parahydra_ros.model.ldmic_em"]


def test_every_folder_is_in_a_layer():
    units = {import_graph.folder(m) for m in import_graph.modules()} - {"parahydra_ros"}
    assert sorted(u for u in units if import_graph.layer_of(u) is None) == []


def test_no_import_circles(edges):
    assert import_graph.circles(edges) == []


def test_no_arrow_points_up_or_sideways(edges):
    """A module imports its own folder and lower layers only: e.g. nothing in model/, codec/ or
    sync/ imports ros/, bagtools/, data/, eval/ or the CLI, and bagtools/ never imports ros/."""
    assert import_graph.upward_arrows(edges) == []


def test_only_ros_and_the_demo_import_ros():
    """No module outside ``ros/`` (and the demo, which runs the ROS pipeline) imports rclpy,
    a ROS message package, message_filters, or a module of ``ros/`` — not even lazily."""
    outside = {module: names for module, names in import_graph.ros_imports().items()
               if import_graph.folder(module) not in import_graph.ROS_FOLDERS}
    assert outside == {}


def test_ros_folder_holds_only_what_imports_ros():
    """A ROS-free module does not live in ``ros/`` (it belongs to codec/, sync/ or pipeline/)."""
    ros_imports = import_graph.ros_imports()
    in_ros = [m for m in import_graph.modules() if import_graph.folder(m) == "ros" and m != "parahydra_ros.ros"]
    assert in_ros
    ros_free = [m for m in in_ros
                if not any(n.split(".")[0] in import_graph.ROS_MODULES or n.startswith("parahydra_ros.msg")
                           for n in ros_imports.get(m, []))]
    assert ros_free == []


def test_the_checks_can_fail():
    assert import_graph.circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    wrong = {"parahydra_ros.codec.api": {"parahydra_ros.ros.qos", "parahydra_ros.model.parahydra"},
             "parahydra_ros.bagtools.info": {"parahydra_ros.pipeline.parameters"}}
    assert import_graph.upward_arrows(wrong) == [
        ("parahydra_ros.bagtools.info", "parahydra_ros.pipeline.parameters"),  # beside: same layer
        ("parahydra_ros.codec.api", "parahydra_ros.ros.qos")]  # up
