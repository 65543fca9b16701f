"""The ROS-free synchronization: message_filters' approximate-time policy, stragglers, offline grouping."""
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from parahydra_ros.sync import (
    ApproximateTimePolicy,
    CameraGrouper,
    Group,
    MissingInputs,
    PartialGroupCollector,
    SyncSettings,
    group_by_time,
)

MS = 1_000_000  # ns
PERIOD = 33_333_333  # 30 Hz, in ns
SLOP = 0.020  # s
T0 = 1_700_000_000 * 1_000_000_000  # a realistic epoch stamp, in ns
REPO = Path(__file__).resolve().parents[1]


def jittered_events(num_inputs, frames, seed, jitter_ms=5, skip=frozenset()):
    """Events ``(input, stamp_ns, (input, frame))`` at 30 Hz with ±jitter, inputs shuffled per frame.

    ``skip`` holds (input, frame) pairs that are never sent.
    """
    rng = random.Random(seed)
    events = []
    for frame in range(frames):
        inputs = list(range(num_inputs))
        rng.shuffle(inputs)
        for index in inputs:
            stamp = T0 + frame * PERIOD + rng.randint(-jitter_ms * MS, jitter_ms * MS)
            if (index, frame) not in skip:
                events.append((index, stamp, (index, frame)))
    return events


def feed(policy, events):
    """Add every event to ``policy`` and return the groups it fired, in order."""
    fired = [policy.add(index, stamp, item) for index, stamp, item in events]
    return [group for group in fired if group is not None]


def frame_of(group):
    """The frame number all members of ``group`` share (fails if they differ)."""
    frames = {item[1] for item in group.items if item is not None}
    assert len(frames) == 1, f"group mixes frames {sorted(frames)}"
    for index, item in enumerate(group.items):
        assert item is None or item[0] == index, "item delivered on the wrong input"
    return frames.pop()


def test_sync_core_does_not_import_ros():
    code = "import sys, parahydra_ros.sync; assert 'rclpy' not in sys.modules, 'rclpy imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# --- approximate-time policy -------------------------------------------------------------


@pytest.mark.parametrize("num_inputs", [2, 6])
def test_jitter_fires_every_set_with_the_right_members(num_inputs):
    events = jittered_events(num_inputs, frames=50, seed=num_inputs)
    fired = feed(ApproximateTimePolicy(num_inputs, queue_size=10, slop=SLOP), events)
    assert [frame_of(group) for group in fired] == list(range(50))
    stamps = {(index, item): stamp for index, stamp, item in events}
    for group in fired:
        assert group.complete
        assert group.stamps == tuple(stamps[index, item] for index, item in enumerate(group.items))
        assert max(group.stamps) - min(group.stamps) < SLOP * 1e9


@pytest.mark.parametrize("num_inputs", [2, 6])
def test_drops_never_pair_wrong_frames_and_later_sets_still_fire(num_inputs):
    skip = {(1, 10), (num_inputs - 1, 20), (0, 21)}
    events = jittered_events(num_inputs, frames=40, seed=7, skip=skip)
    fired = feed(ApproximateTimePolicy(num_inputs, queue_size=10, slop=SLOP), events)
    assert [frame_of(group) for group in fired] == [f for f in range(40) if f not in (10, 20, 21)]


def test_out_of_order_arrivals_within_the_queue_still_match():
    events = jittered_events(3, frames=40, seed=3)
    per_input = [[e for e in events if e[0] == i] for i in range(3)]
    rng = random.Random(11)
    for stream in per_input:  # shuffle each input's stream in blocks of 4 frames
        for start in range(0, len(stream), 4):
            block = stream[start:start + 4]
            rng.shuffle(block)
            stream[start:start + 4] = block
    interleaved = [e for batch in zip(*per_input) for e in batch]
    fired = feed(ApproximateTimePolicy(3, queue_size=10, slop=SLOP), interleaved)
    assert sorted(frame_of(group) for group in fired) == list(range(40))


def test_closest_candidate_is_tried_first():
    policy = ApproximateTimePolicy(2, queue_size=10, slop=SLOP)
    assert policy.add(0, 0, "a0") is None
    assert policy.add(0, 15 * MS, "a15") is None
    assert policy.add(1, 10 * MS, "b10") == Group(stamps=(15 * MS, 10 * MS), items=("a15", "b10"))
    assert policy.add(1, 1 * MS, "b1") == Group(stamps=(0, 1 * MS), items=("a0", "b1"))


def test_spread_must_be_strictly_below_slop():
    policy = ApproximateTimePolicy(2, queue_size=10, slop=SLOP)
    policy.add(0, T0, "a")
    assert policy.add(1, T0 + 20 * MS, "b") is None
    assert policy.add(1, T0 + 20 * MS - 1, "c").items == ("a", "c")
    zero = ApproximateTimePolicy(2, queue_size=10, slop=0.0)  # as message_filters: never fires
    zero.add(0, T0, "a")
    assert zero.add(1, T0, "b") is None


def test_same_stamp_on_one_input_replaces_the_queued_item():
    policy = ApproximateTimePolicy(2, queue_size=10, slop=SLOP)
    policy.add(0, T0, "first")
    policy.add(0, T0, "second")
    assert policy.add(1, T0, "b").items == ("second", "b")


def test_queue_size_trims_the_oldest_stamps():
    policy = ApproximateTimePolicy(2, queue_size=2, slop=SLOP)
    for frame in range(3):
        assert policy.add(0, T0 + frame * PERIOD, f"a{frame}") is None
    assert policy.add(1, T0, "b0") is None  # a0 was trimmed
    assert policy.add(1, T0 + 2 * PERIOD, "b2").items == ("a2", "b2")
    assert policy.add(1, T0 + PERIOD, "b1").items == ("a1", "b1")

    full = ApproximateTimePolicy(2, queue_size=2, slop=SLOP)
    full.add(0, T0 + PERIOD, "a1")
    full.add(0, T0 + 2 * PERIOD, "a2")
    assert full.add(0, T0, "a0") is None  # older than a full queue: discarded at once
    assert full.add(1, T0, "b0") is None


def test_concurrent_inputs_fire_each_set_once():
    num_inputs, frames = 3, 200
    policy = ApproximateTimePolicy(num_inputs, queue_size=frames, slop=SLOP)
    fired, fired_lock = [], threading.Lock()

    def run(index):
        for frame in range(frames):
            group = policy.add(index, T0 + frame * PERIOD, (index, frame))
            if group is not None:
                with fired_lock:
                    fired.append(group)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(num_inputs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(frame_of(group) for group in fired) == list(range(frames))


def _hard_stream(num_inputs, frames, seed):
    """Events that exercise every rule: jitter up to the slop (stamps exactly ``slop`` apart
    too), dropped frames, repeated stamps, late frames and bursts that overflow small queues."""
    rng = random.Random(seed)
    events = []
    for frame in range(frames):
        for index in rng.sample(range(num_inputs), num_inputs):
            if rng.random() < 0.1:
                continue  # dropped
            offset = rng.choice([0, 20 * MS, -20 * MS, 20 * MS - 1]) if rng.random() < 0.2 \
                else rng.randint(-12 * MS, 12 * MS)
            stamp = T0 + frame * PERIOD + offset
            events.append((index, stamp, (index, frame)))
            if rng.random() < 0.05:
                events.append((index, stamp, (index, frame)))  # the same stamp again
    for _ in range(frames // 4):  # some frames arrive late, several frames later
        i = rng.randrange(len(events) - 8)
        events.insert(i + rng.randint(2, 8), events.pop(i))
    return events


@pytest.mark.parametrize("num_inputs, queue_size, seed", [(2, 10, 1), (3, 3, 2), (4, 2, 3), (6, 10, 4)])
def test_policy_fires_exactly_what_message_filters_fires(num_inputs, queue_size, seed):
    """The node and the bag tool group with ``ApproximateTimePolicy``; where the real
    message_filters is installed, its ``ApproximateTimeSynchronizer`` must fire the same groups,
    in the same order, on the same arrivals (skipped where it is not importable)."""
    message_filters = pytest.importorskip("message_filters")
    from types import SimpleNamespace

    from rclpy.time import Time

    events = _hard_stream(num_inputs, frames=120, seed=seed)
    ours = [(group.stamps, group.items) for group in feed(ApproximateTimePolicy(num_inputs, queue_size, SLOP),
                                                          events)]
    inputs = [message_filters.SimpleFilter() for _ in range(num_inputs)]
    synchronizer = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, SLOP)
    theirs = []
    synchronizer.registerCallback(lambda *msgs: theirs.append(
        (tuple(m.header.stamp.nanoseconds for m in msgs), tuple(m.item for m in msgs))))
    for index, stamp, item in events:
        inputs[index].signalMessage(SimpleNamespace(header=SimpleNamespace(stamp=Time(nanoseconds=stamp)), item=item))
    assert len(ours) > 10  # the stream does fire groups
    assert theirs == ours


# --- stragglers --------------------------------------------------------------------------


def test_stalled_camera_gives_partial_groups_and_is_reported_once():
    """Camera 2 stops for frames 30..69: the others' frames come out as partial groups."""
    num_inputs, frames, stall = 3, 100, range(30, 70)
    skip = {(2, frame) for frame in stall}
    events = jittered_events(num_inputs, frames, seed=5, skip=skip)
    policy = ApproximateTimePolicy(num_inputs, queue_size=10, slop=SLOP)
    collector = PartialGroupCollector(num_inputs, slop=SLOP, deadline=0.2)
    complete, partial, went_missing, came_back = [], [], [], []
    for index, stamp, item in events:
        now = (stamp - T0) / 1e9 + 0.010  # arrival: 10 ms after capture
        collector.add(index, stamp, now, item)
        fired = policy.add(index, stamp, item)
        if fired is not None:
            complete.append(collector.complete(fired))
        result = collector.poll(now)
        partial.extend(result.groups)
        went_missing.extend(result.went_missing)
        came_back.extend(result.came_back)
    assert collector.missing == frozenset()
    partial.extend(collector.poll(now + 1.0).groups)

    assert [frame_of(group) for group in complete] == [f for f in range(frames) if f not in stall]
    assert all(group.complete for group in complete)
    assert [frame_of(group) for group in partial] == list(stall)
    assert all(group.members == (0, 1) for group in partial)
    assert went_missing == [2] and came_back == [2]
    assert collector.dropped == 0


def test_partial_group_takes_each_input_once_and_only_within_slop():
    collector = PartialGroupCollector(3, slop=SLOP, deadline=0.1)
    collector.add(0, T0, 0.0, "a0")
    collector.add(0, T0 + 10 * MS, 0.0, "a10")
    collector.add(1, T0 + 5 * MS, 0.0, "b5")
    collector.add(2, T0 + 50 * MS, 0.05, "c50")  # too far from the others
    assert collector.poll(0.05).groups == ()
    groups = collector.poll(0.2).groups
    assert [group.items for group in groups] == [
        ("a0", "b5", None),
        ("a10", None, None),
        (None, None, "c50"),
    ]
    assert groups[0].stamps == (T0, T0 + 5 * MS, None)


def test_partner_that_has_not_expired_yet_joins_the_partial_group():
    collector = PartialGroupCollector(2, slop=SLOP, deadline=0.1)
    collector.add(0, T0, 0.0, "a")
    collector.add(1, T0 + 3 * MS, 0.08, "b")
    assert [group.items for group in collector.poll(0.15).groups] == [("a", "b")]


def test_late_member_of_a_given_out_group_is_delivered_alone():
    collector = PartialGroupCollector(3, slop=SLOP, deadline=0.1)
    collector.add(0, T0, 0.0, "a")
    collector.add(1, T0, 0.0, "b")
    assert [group.items for group in collector.poll(0.2).groups] == [("a", "b", None)]
    collector.add(2, T0, 0.25, "c")
    fired = Group(stamps=(T0, T0, T0), items=("a", "b", "c"))
    assert collector.complete(fired) == Group(stamps=(None, None, T0), items=(None, None, "c"))
    assert collector.complete(fired) is None
    assert collector.poll(1.0).groups == ()


def test_completion_before_the_message_is_added_is_not_given_out_again():
    collector = PartialGroupCollector(2, slop=SLOP, deadline=0.1)
    collector.add(0, T0, 0.0, "a")
    fired = Group(stamps=(T0, T0), items=("a", "b"))
    assert collector.complete(fired) is fired
    collector.add(1, T0, 0.0, "b")  # its per-message callback ran after the set callback
    assert collector.poll(1.0).groups == ()


def test_missing_inputs_are_reported_once_and_a_pause_of_all_is_one_event():
    watch = MissingInputs(3, deadline=1.0)
    assert watch.poll(5.0) == ([], [], False)  # nothing ever arrived: no clock yet
    for i in range(3):
        watch.seen(i, 0.0)
    assert watch.poll(0.5) == ([], [], False)
    for t in (1.0, 2.0):
        watch.seen(0, t)
        watch.seen(1, t)
    assert watch.poll(2.1) == ([2], [], False)  # input 2 silent while the others deliver
    assert watch.poll(2.5) == ([], [], False)  # reported once
    assert watch.poll(3.5) == ([], [], True)  # everyone silent: one event
    assert watch.poll(4.0) == ([], [], False)
    watch.seen(0, 10.0)  # resume: input 1 is not missing for arriving a little after input 0
    assert watch.poll(10.5) == ([], [], False)
    watch.seen(1, 10.6)
    assert watch.poll(10.7) == ([], [], False) and set(watch.reported) == {2}
    watch.seen(0, 11.0)
    watch.seen(1, 11.0)
    assert watch.poll(11.2) == ([], [], False)  # input 2 was reported before the pause: still missing
    watch.seen(2, 11.3)
    assert watch.poll(11.4) == ([], [2], False) and not watch.reported


def test_cameras_slower_than_the_deadline_fall_silent_once_per_episode():
    """Issue 14: cameras at 0.5 Hz with a 1 s deadline fall silent between every two frames; that is
    one report, not one per gap, until they deliver steadily again (then a new pause is reported)."""
    watch = MissingInputs(2, deadline=1.0)
    reports = []
    for frame in range(10):  # every 2 s, polled every 0.25 s
        t = 2.0 * frame
        watch.seen(0, t)
        watch.seen(1, t)
        reports += [watch.poll(t + 0.25 * k)[2] for k in range(1, 8)]
    assert reports.count(True) == 1
    t = 20.0
    while t < 24.0:  # steady 10 Hz for 4 s (> twice the deadline): the episode is over
        watch.seen(0, t)
        watch.seen(1, t)
        assert watch.poll(t + 0.05) == ([], [], False)
        t += 0.1
    assert watch.poll(t + 1.5)[2] is True  # a new pause is a new episode
    assert watch.poll(t + 2.0)[2] is False


def test_collector_reports_missing_inputs_through_its_poll():
    """The collector's poll carries ``MissingInputs``' events: the one missing-camera policy."""
    collector = PartialGroupCollector(2, slop=SLOP, deadline=0.5)
    assert collector.poll(10.0).went_missing == ()  # nothing ever arrived
    collector.add(0, T0, 0.0, "a0")
    collector.add(1, T0, 0.0, "b0")
    collector.add(0, T0 + PERIOD, 0.4, "a1")
    collector.add(0, T0 + 2 * PERIOD, 0.8, "a2")
    result = collector.poll(0.8)
    assert result.went_missing == (1,) and not result.all_fell_silent
    assert collector.missing == frozenset({1}) and collector.poll(0.9).went_missing == ()
    result = collector.poll(2.0)
    assert result.all_fell_silent and result.went_missing == () and collector.all_silent
    collector.add(1, T0 + 3 * PERIOD, 2.1, "b3")
    collector.add(0, T0 + 3 * PERIOD, 2.1, "a3")
    result = collector.poll(2.2)
    assert result.came_back == (1,) and not collector.all_silent and collector.missing == frozenset()


def test_capacity_bounds_waiting_messages():
    collector = PartialGroupCollector(1, slop=SLOP, deadline=0.1, capacity=3)
    for frame in range(5):
        collector.add(0, T0 + frame * PERIOD, 0.0, frame)
    assert collector.dropped == 2
    assert [group.items for group in collector.poll(1.0).groups] == [(2,), (3,), (4,)]


# --- offline grouping --------------------------------------------------------------------


def test_group_by_time_keeps_every_frame_exactly_once():
    frames = 60
    skip = {(1, 5)} | {(2, frame) for frame in range(20, 30)} | {(0, 40), (1, 40)}
    events = jittered_events(3, frames, seed=9, skip=skip)
    groups = list(group_by_time(events, 3, SyncSettings(slop=SLOP, queue_size=5, deadline=0.5)))

    delivered = [item for group in groups for item in group.items if item is not None]
    assert sorted(delivered) == sorted(item for _, _, item in events)
    complete = sorted(frame_of(group) for group in groups if group.complete)
    assert complete == [f for f in range(frames) if f not in (5, 40) and not 20 <= f < 30]
    partial = {frame_of(group): group.members for group in groups if not group.complete}
    assert partial == {5: (0, 2), 40: (2,), **{frame: (0, 1) for frame in range(20, 30)}}
