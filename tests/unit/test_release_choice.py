"""The decisions rollback and prune make from the hosts' facts, on fake hosts (no host needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlctl.config.layout import Layout
from mlctl.core.errors import RollbackFailed
from mlctl.tasks import prune, rollback
from mlctl.tasks.releases import earlier_good, rollback_target

R = [f"2026010100000{i}-abcdef1" for i in range(1, 8)]


def facts(current, good=(), bad=(), removed=(), extra=()) -> dict:
    """A host's facts: its releases on disk and their metadata."""
    metas = {r: {"status": "good"} for r in good}
    metas.update({r: {"status": "bad"} for r in bad})
    metas.update({r: {"status": "good", "removed": True} for r in removed})
    on_disk = sorted({*good, *bad, *extra, *([current] if current else [])})
    return {"current": current, "releases": on_disk, "metas": metas}


def fake_session(**hosts: dict):
    return SimpleNamespace(hosts=[SimpleNamespace(name=n, facts=f) for n, f in hosts.items()])


def test_rollback_goes_to_the_newest_good_release_before_current():
    host = facts(R[4], good=[R[1], R[2], R[4]], bad=[R[3]])
    assert rollback_target({"h1": host}) == R[2]


def test_rollback_skips_bad_removed_and_newer_releases():
    host = facts(R[3], good=[R[0], R[3], R[5]], bad=[R[2]], removed=[R[1]])
    assert earlier_good(host["releases"], host["metas"], host["current"]) == {R[0]}
    assert rollback_target({"h1": host}) == R[0]


def test_rollback_target_is_good_on_every_host():
    h1 = facts(R[4], good=[R[1], R[2], R[3], R[4]])
    h2 = facts(R[4], good=[R[1], R[2], R[4]], bad=[R[3]])  # R[3] failed here
    sess = fake_session(h1=h1, h2=h2)
    assert rollback.choose_target(sess, None) == R[2]


def test_rollback_without_a_common_earlier_good_release_names_no_host():
    h1 = facts(R[2], good=[R[1], R[2]])
    h2 = facts(R[2], good=[R[2]], extra=[R[1]])  # R[1] on disk, never good here
    with pytest.raises(RollbackFailed, match="no earlier good release to roll back to on every"):
        rollback_target({"h1": h1, "h2": h2})


def test_rollback_to_a_release_missing_on_one_host_names_that_host():
    h1 = facts(R[3], good=[R[1], R[3]])
    h2 = facts(R[3], good=[R[3]])
    assert rollback_target({"h1": h1}, R[1]) == R[1]
    with pytest.raises(RollbackFailed, match=f"h2: release {R[1]} is not on this host"):
        rollback_target({"h1": h1, "h2": h2}, R[1])


def test_rollback_of_a_host_serving_nothing_takes_its_newest_good_release():
    assert rollback_target({"h1": facts(None, good=[R[0], R[1]])}) == R[1]


def survivors(releases, metas, current, keep):
    doomed = prune.choose(releases, metas, current, keep)
    assert current not in doomed
    return sorted(set(releases) - set(doomed))


def test_prune_never_removes_current_nor_the_rollback_target():
    host = facts(R[6], good=R[:7])
    for keep in (1, 2, 3):
        kept = survivors(host["releases"], host["metas"], R[6], keep)
        assert rollback_target({"h1": {**host, "releases": kept}}) == R[5]
        assert len(kept) == max(keep, 2)


def test_prune_keeps_the_rollback_target_behind_failed_releases():
    host = facts(R[6], good=[R[0], R[1], R[6]], bad=R[2:6])
    assert survivors(host["releases"], host["metas"], R[6], keep=1) == [R[1], R[6]]


def test_prune_after_a_deploy_keeps_what_rollback_needs():
    """prune.commands marks the new release good and current, from the facts before the run."""
    before = facts(R[4], good=[R[2], R[3], R[4]], bad=[R[1]])
    lay = Layout("/srv/app")
    rm, _ = prune.commands(lay, before, R[5], keep=1)
    assert rm.render().startswith(
        f"rm -rf /srv/app/releases/{R[1]} /srv/app/releases/{R[2]} /srv/app/releases/{R[3]} ||"
    )
    after = {"current": R[5], "releases": [R[4], R[5]], "metas": before["metas"]}
    after["metas"] = {**after["metas"], R[5]: {"status": "good"}}
    assert rollback_target({"h1": after}) == R[4]


def test_prune_of_a_first_release_removes_nothing_but_unused_venvs():
    lay = Layout("/srv/app")
    (venvs,) = prune.commands(lay, facts(None), R[0], keep=1)
    assert venvs.render().startswith("( cd /srv/app && for v in venvs/*;")


def test_a_rollback_marks_the_target_good_and_the_release_it_left_rolled_back():
    metas = {R[1]: {"status": "good", "commit": "c1"}, R[2]: {"status": "good", "commit": "c2"}}
    assert rollback.served_metas(metas, R[1], R[2]) == [
        {"status": "good", "commit": "c1", "id": R[1]},
        {"status": "rolled-back", "commit": "c2", "id": R[2]},
    ]
    assert rollback.served_metas(metas, R[1], R[1]) == [
        {"status": "good", "commit": "c1", "id": R[1]}
    ]  # --to the release it serves: nothing is rolled back
    assert rollback.served_metas({}, R[1], None) == [{"id": R[1], "status": "good"}]
