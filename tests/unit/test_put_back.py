"""What a failed deploy puts back, decided from what it had done when it failed (fake hosts)."""

from __future__ import annotations

from types import SimpleNamespace

from mlctl.tasks.compensation import KEEP, OUT_OF_SERVICE, SERVE, Compensation, put_back

HOSTS = ["w1", "w2"]
SERVED = {"w1": "r1", "w2": "r1"}


def decide(locked=(), built=(), migrated=(), switched=(), needs_operator=False, previous=SERVED):
    return put_back(HOSTS, previous, locked, built, migrated, switched, needs_operator)


def test_failure_while_locking_records_it_where_a_lock_was_taken_and_removes_nothing():
    plan = decide(locked=["w1"])
    assert (plan.serve, plan.undo_migration, plan.discard) == ({}, [], [])
    assert plan.record_failure == ["w1"]


def test_failure_while_building_removes_the_new_release_everywhere():
    plan = decide(locked=HOSTS, built=["w1"])
    assert plan.discard == HOSTS and plan.record_failure == HOSTS
    assert plan.serve == {} and plan.undo_migration == []


def test_failure_after_a_migration_undoes_it_before_removing_the_release():
    plan = decide(locked=HOSTS, built=HOSTS, migrated=["w2"])
    assert (plan.undo_migration, plan.discard, plan.serve) == (["w2"], HOSTS, {})


def test_a_migration_that_may_still_run_keeps_the_release_it_uses():
    plan = decide(locked=HOSTS, built=HOSTS, needs_operator=True)
    assert plan.discard == [] and plan.record_failure == HOSTS


def test_failure_after_the_switch_puts_each_host_back_on_what_it_served():
    plan = decide(locked=HOSTS, built=HOSTS, migrated=["w1"], switched=["w1"])
    assert plan.serve == {"w1": (SERVE, "r1"), "w2": (KEEP, "r1")}
    assert plan.undo_migration == ["w1"]
    # the release's own metadata records the outcome: no discard, no separate failure record
    assert (plan.discard, plan.record_failure) == ([], [])


def test_a_first_deploy_that_fails_after_the_switch_is_taken_out_of_service():
    previous = {"w1": None, "w2": "r0"}
    plan = decide(locked=HOSTS, built=HOSTS, switched=HOSTS, previous=previous)
    assert plan.serve == {"w1": (OUT_OF_SERVICE, None), "w2": (SERVE, "r0")}


class FakeDeploy(Compensation):
    """A deploy's state with fake hosts, to check that `decide` reads it right."""

    def __init__(self, **done):
        hosts = [SimpleNamespace(name=n, facts={"current": SERVED[n]}) for n in HOSTS]
        self.sess = SimpleNamespace(hosts=hosts)
        by = {h.name: h for h in hosts}
        for what in ("locked", "built", "migrated", "switched"):
            setattr(self, what, [by[n] for n in done.get(what, [])])
        self.needs_operator = done.get("needs_operator", False)


def test_the_deploy_state_feeds_the_decision():
    plan = FakeDeploy(locked=HOSTS, built=HOSTS, switched=["w2"]).decide()
    assert plan.serve == {"w1": (KEEP, "r1"), "w2": (SERVE, "r1")}
    plan = FakeDeploy(locked=["w1"], built=["w1"], needs_operator=True).decide()
    assert (plan.discard, plan.record_failure, plan.serve) == ([], ["w1"], {})
