"""QoS profiles by name, so that parameters and the pipeline YAML can choose them.

* ``sensor_data``: best effort, keep last 5, volatile (``rclpy.qos.qos_profile_sensor_data``):
  what camera subscribers use; a late frame is worth less than the next one.
* ``reliable``: reliable, keep last 10, volatile: what the nodes publish with by
  default, because a reliable publisher serves both reliable and best-effort
  subscribers, while a best-effort publisher silently starves a reliable subscriber.
* ``best_effort``: best effort, keep last 10, volatile.
* ``system_default``: the RMW's defaults.

A name may carry a depth: ``reliable:1`` keeps only the newest message.
"""
from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

PROFILES = ("sensor_data", "reliable", "best_effort", "system_default")


def qos_profile(name: str) -> QoSProfile:
    """The profile called ``name`` (``NAME`` or ``NAME:DEPTH``); ``ValueError`` for anything else."""
    base, _, depth_text = name.strip().partition(":")
    if base == "sensor_data":
        profile = QoSProfile(**_fields(qos_profile_sensor_data))
    elif base == "reliable":
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    elif base == "best_effort":
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
    elif base == "system_default":
        profile = QoSProfile(**_fields(qos_profile_system_default))
    else:
        raise ValueError(f"unknown QoS profile {name!r}; choose one of {', '.join(PROFILES)} "
                         "(optionally with ':DEPTH', e.g. reliable:1)")
    if depth_text:
        try:
            depth = int(depth_text)
        except ValueError:
            depth = 0
        if depth < 1:
            raise ValueError(f"QoS profile {name!r}: depth must be a positive integer")
        profile.history = HistoryPolicy.KEEP_LAST
        profile.depth = depth
    return profile


def describe(profile: QoSProfile) -> str:
    """A short text for logs, e.g. ``best_effort/keep_last 5/volatile``."""
    keep_last = profile.history == HistoryPolicy.KEEP_LAST
    history = f"keep_last {profile.depth}" if keep_last else profile.history.name.lower()
    return f"{profile.reliability.name.lower()}/{history}/{profile.durability.name.lower()}"


def _fields(profile: QoSProfile) -> dict:
    return dict(history=profile.history, depth=profile.depth, reliability=profile.reliability,
                durability=profile.durability)
