"""Avocado adapters over qmp_scenarios: one test per named scenario, nothing else.

Avocado finds tests by reading this file, so each scenario has its own method (a pytest
test checks that none is missing). The base class, vudm_testing's VudmTest, saves each
result's JSON and timeline PNG in the test's outputdir and fails with the verdict.
Methods tagged ``ci`` are the subset `make test` runs (`make avocado` runs them all).
"""

from __future__ import annotations

from vudm_testing.avocado_test import VudmTest


class Scenarios(VudmTest):
    """:avocado: enable
    :avocado: tags=vudm,guest,scenario"""

    def _run(self, name: str) -> None:
        self.run_scenario(name)

    def test_daemon_kill_during_suspend(self) -> None:
        self._run("daemon-kill-during-suspend")

    def test_daemon_kill_loop(self) -> None:
        self._run("daemon-kill-loop")

    def test_daemon_kill_parked(self) -> None:
        """:avocado: tags=ci"""
        self._run("daemon-kill-parked")

    def test_daemon_kill_stateless_eio(self) -> None:
        """:avocado: tags=ci"""
        self._run("daemon-kill-stateless-eio")

    def test_delay_suspend(self) -> None:
        self._run("delay-suspend")

    def test_delay_suspend_error_eio(self) -> None:
        self._run("delay-suspend-error-eio")

    def test_demo(self) -> None:
        """:avocado: tags=ci"""
        self._run("demo")

    def test_dust_bad_blocks(self) -> None:
        self._run("dust-bad-blocks")

    def test_dust_bad_blocks_rewritten(self) -> None:
        self._run("dust-bad-blocks-rewritten")

    def test_distro_boot_failover(self) -> None:
        self._run("distro-boot-failover")

    def test_distro_boot_failover_eio(self) -> None:
        self._run("distro-boot-failover-eio")

    def test_error_target_eio(self) -> None:
        self._run("error-target-eio")

    def test_flakey_drop_writes(self) -> None:
        self._run("flakey-drop-writes")

    def test_flakey_error_reads_eio(self) -> None:
        self._run("flakey-error-reads-eio")

    def test_flakey_error_reads_failover(self) -> None:
        self._run("flakey-error-reads-failover")

    def test_flush_no_path_fail_eio(self) -> None:
        self._run("flush-no-path-fail-eio")

    def test_flush_no_path_queued(self) -> None:
        self._run("flush-no-path-queued")

    def test_hotplug_loop(self) -> None:
        self._run("hotplug-loop")

    def test_hotplug_loop_error_eio(self) -> None:
        self._run("hotplug-loop-error-eio")

    def test_linear_boundary_verify(self) -> None:
        self._run("linear-boundary-verify")

    def test_linear_verify(self) -> None:
        self._run("linear-verify")

    def test_mirror_leg_failure_flush_suspend_eio(self) -> None:
        self._run("mirror-leg-failure-flush-suspend-eio")

    def test_mirror_leg_failure_hold_repair(self) -> None:
        self._run("mirror-leg-failure-hold-repair")

    def test_mpath_over_flakey(self) -> None:
        self._run("mpath-over-flakey")

    def test_mpath_over_flakey_both_down_eio(self) -> None:
        self._run("mpath-over-flakey-both-down-eio")

    def test_multiqueue(self) -> None:
        self._run("multiqueue")

    def test_multiqueue_error_eio(self) -> None:
        self._run("multiqueue-error-eio")

    def test_path_churn(self) -> None:
        self._run("path-churn")

    def test_path_churn_no_queue_eio(self) -> None:
        self._run("path-churn-no-queue-eio")

    def test_path_partition(self) -> None:
        self._run("path-partition")

    def test_path_partition_no_queue_eio(self) -> None:
        """:avocado: tags=ci"""
        self._run("path-partition-no-queue-eio")

    def test_resize(self) -> None:
        """:avocado: tags=ci"""
        self._run("resize")

    def test_resize_error_eio(self) -> None:
        self._run("resize-error-eio")

    def test_seed000_mirror_log_failure_flush_eio(self) -> None:
        self._run("seed000-mirror-log-failure-flush-eio")

    def test_seed000_mirror_log_failure_noflush(self) -> None:
        self._run("seed000-mirror-log-failure-noflush")

    def test_seed001_flush_suspend_eio(self) -> None:
        self._run("seed001-flush-suspend-eio")

    def test_seed001_flush_suspend_spanning_eio(self) -> None:
        self._run("seed001-flush-suspend-spanning-eio")

    def test_seed001_interrupted_suspend_late_requeue_eio(self) -> None:
        self._run("seed001-interrupted-suspend-late-requeue-eio")

    def test_seed001_interrupted_suspend_pushback(self) -> None:
        self._run("seed001-interrupted-suspend-pushback")

    def test_seed001_no_path_eio(self) -> None:
        self._run("seed001-no-path-eio")

    def test_seed001_noflush_holds_io(self) -> None:
        self._run("seed001-noflush-holds-io")

    def test_seed001_noflush_load_fresh_path(self) -> None:
        self._run("seed001-noflush-load-fresh-path")

    def test_seed001_noflush_load_spanning(self) -> None:
        """:avocado: tags=ci"""
        self._run("seed001-noflush-load-spanning")

    def test_seed001_noflush_suspend_timeout(self) -> None:
        self._run("seed001-noflush-suspend-timeout")

    def test_seed001_queue_if_no_path(self) -> None:
        self._run("seed001-queue-if-no-path")

    def test_seed001_valid_paths(self) -> None:
        self._run("seed001-valid-paths")

    def test_seed003_split_flush_suspend_eio(self) -> None:
        self._run("seed003-split-flush-suspend-eio")

    def test_seed003_split_requeue_noflush_load(self) -> None:
        """:avocado: tags=ci"""
        self._run("seed003-split-requeue-noflush-load")

    def test_seed004_striped_flush_fanout(self) -> None:
        self._run("seed004-striped-flush-fanout")

    def test_seed004_striped_flush_no_path_eio(self) -> None:
        self._run("seed004-striped-flush-no-path-eio")

    def test_striped_verify(self) -> None:
        self._run("striped-verify")

    def test_table_swap_flush_suspend(self) -> None:
        self._run("table-swap-flush-suspend")

    def test_table_swap_flush_suspend_error_eio(self) -> None:
        self._run("table-swap-flush-suspend-error-eio")
