"""The Ray Serve application built from the real archives, without a cluster: deployment options from each
archive's model-config, default versions, and the CPU check that refuses a deploy the cluster cannot place."""

from __future__ import annotations

import shutil

from tests.paths import STORE, require_built
from toolkit.archive.mar import Archive, store_archives
from toolkit.engines.ray.app import cpus_needed, default_versions, deployment_name, deployment_options


def test_options_come_from_the_archive_s_config():
    spec = Archive.open(require_built(STORE / "mnist.mar", "make archive"))
    options = deployment_options(spec.config)
    ray = spec.config.ray_settings()
    assert options["autoscaling_config"]["min_replicas"] == spec.config.min_workers == ray.min_replicas
    assert options["max_ongoing_requests"] >= spec.config.batch_size
    assert options["max_queued_requests"] == spec.config.job_queue_size
    assert options["ray_actor_options"] == {"num_cpus": ray.num_cpus, "num_gpus": 0.0}
    assert (spec.name, deployment_name(spec)) == ("mnist", f"mnist_{spec.version}")


def test_the_shipped_archives_fit_make_ray_serve_s_two_one_cpu_nodes():
    archives = [Archive.open(path) for path in store_archives(STORE)]
    assert {a.name for a in archives} >= {"mnist", "tabular"}
    assert cpus_needed(archives) <= 2.0


def test_the_default_version_is_that_of_name_mar(tmp_path):
    mnist = require_built(STORE / "mnist.mar", "make archive")
    shutil.copy2(mnist, tmp_path / "mnist.mar")
    specs = [Archive.open(tmp_path / "mnist.mar")]
    assert default_versions(specs) == {"mnist": specs[0].version}
