"""ParaHydra for ROS 2: distributed multi-view image compression for multi-camera robots.

Folders are layers (``model`` < ``codec`` < ``sync`` < ``pipeline``/``bagtools`` < ``data`` <
``ros``/``eval`` < the tools; ``scripts/import_graph.py``): only ``ros`` (and ``demo``, which
runs the ROS pipeline) imports ROS. The generated ``parahydra_ros.msg`` module is
installed beside these sources by the CMake/rosidl build.
"""
from pkgutil import extend_path

# A source checkout on sys.path would shadow the installed package, which also
# holds the generated message module: merge both.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
