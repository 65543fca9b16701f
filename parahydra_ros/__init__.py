"""ParaHydra for ROS 2: distributed multi-view image compression for multi-camera robots.

The codec core (``model``, ``codec``, ``data``, ``eval``) never imports ROS; the
ROS 2 layer lives in ``ros``. The generated ``parahydra_ros.msg`` module is
installed beside these sources by the CMake/rosidl build.
"""
from pkgutil import extend_path

# A source checkout on sys.path would shadow the installed package, which also
# holds the generated message module: merge both.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
