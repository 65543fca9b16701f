#!/usr/bin/env python3
"""Print the README's node parameter tables, generated from ``parahydra_ros/pipeline/parameters.py``.

    python scripts/readme_parameters.py            # paste the output into README.md

One section per node, under the heading ``### <node> parameters`` (``encoder_node``,
``decoder_node``, ``camera_replay_node``): ``test/test_readme_parameters.py`` finds the
tables by these headings and fails when a row's default differs from the node's or a
parameter is missing, so rerun this whenever a parameter changes.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from parahydra_ros.pipeline.parameters import NODES, markdown_table  # noqa: E402

#: The README heading of each node's table (the test looks for exactly these).
HEADING = "### {node} parameters"


def tables() -> str:
    """Every node's heading and table, in ``NODES`` order."""
    return "\n\n".join(f"{HEADING.format(node=node)}\n\n{markdown_table(table)}" for node, table in NODES.items())


if __name__ == "__main__":
    print(tables())
