"""Multi-host training for real: two jax.distributed processes on localhost (CPU, gloo collectives).

Phase 1 (together): processes 0 and 1 of a 2-process run (2 devices each) train steps 1-30 of
``configs/test.py`` and stop (checkpoint at 30); one reference process with 4 devices trains steps
1-60. Phase 2: both processes rerun, resume from the checkpoint and train steps 31-60; beside them,
a second pair trains steps 1-4 in a fresh workdir with its devices handed over interleaved
(``[p0d0, p1d0, p0d1, p1d1]``, as a TPU torus order gives them). The batches come from the global
sampler, so all layouts train on the same global batches. The workers
(tests/support/multihost_worker.py, run as a script) run without TensorFlow.
The fixture takes 1-3 minutes (cold XLA compiles and gloo collectives on 2 shared cores), hence
``slow``.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from support.paths import ROOT, TESTS

WORKER = os.path.join(TESTS, "support", "multihost_worker.py")
STEPS, STOP = 60, 30
# configs/test.py's global batch, and the rows each of the two processes builds.
BATCH = 16
ROWS = ([0, 8], [8, 16])
# Steps the pair given interleaved devices trains.
INTERLEAVED_STEPS = 4
# Seconds a phase of worker processes may take before the test kills them.
PHASE_TIMEOUT = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(devices: int, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "TPU_"))}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"  # not pytest's 8
    env["JAX_COMPILATION_CACHE_DIR"] = cache
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = TESTS  # (support.no_tensorflow)
    return env


def run_phase(jobs: list[tuple[list[str], dict, str]], during=None) -> None:
    """Starts every ``(argv, env, log)`` at once; waits; kills all process groups on any failure.

    ``during(procs)``, if given, is called every 0.2 s while they run (e.g. to send a signal).
    """
    procs = []
    try:
        for argv, env, log in jobs:
            with open(log, "w") as out:
                procs.append(
                    subprocess.Popen(  # -P: the script's folder is not put on sys.path
                        [sys.executable, "-P", WORKER, *argv],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                        start_new_session=True,
                    )
                )
        deadline = time.time() + PHASE_TIMEOUT
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one failed: the others would wait for it forever
            if during is not None:
                during(procs)
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, (_, _, log) in zip(procs, jobs, strict=True):
        with open(log) as f:
            text = f.read()
        assert p.returncode == 0, f"worker exited with {p.returncode}:\n{text[-3000:]}"


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Records of phase 1 (a0, a1: steps 1-30; ref: steps 1-60) and phase 2 (b0, b1: steps 31-60;
    i0, i1: steps 1-4 from interleaved devices)."""
    tmp = tmp_path_factory.mktemp("multihost")
    image_cache, xla_cache = str(tmp / "images"), str(tmp / "xla")
    common = ["--without-tensorflow", "--steps", str(STEPS), "--cache-dir", image_cache]
    two = worker_env(2, xla_cache)

    def pair(name, extra, workdir="multi"):
        address = f"127.0.0.1:{free_port()}"
        return [
            (
                [
                    *common,
                    *extra,
                    "--workdir",
                    str(tmp / workdir),
                    "--out",
                    str(tmp / f"{name}{i}.json"),
                    "--coordinator",
                    address,
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
                two,
                str(tmp / f"{name}{i}.log"),
            )
            for i in range(2)
        ]

    reference = (
        [
            *common,
            "--workdir",
            str(tmp / "single"),
            "--out",
            str(tmp / "ref.json"),
        ],
        worker_env(4, xla_cache),
        str(tmp / "ref.log"),
    )
    start = time.time()
    run_phase([*pair("a", ["--stop-at", str(STOP)]), reference])
    steps_after_phase_1 = sorted(os.listdir(tmp / "multi" / "checkpoints"))
    interleaved = ["--device-order", "interleaved", "--stop-at", str(INTERLEAVED_STEPS)]
    run_phase([*pair("b", []), *pair("i", interleaved, workdir="interleaved")])
    out = {name: load(tmp / f"{name}.json") for name in ("a0", "a1", "b0", "b1", "i0", "i1", "ref")}
    out.update(tmp=tmp, seconds=time.time() - start, steps_after_phase_1=steps_after_phase_1)
    return out


# --- checks (also run on wrong records, to show they can fail) -------------------------------------


def check_rows(records: list[dict], reference: dict) -> None:
    """Process i built rows ROWS[i] of every global batch and fed them; together they are the
    reference's global batch, row by row."""
    for i, record in enumerate(records):
        for step, fed in record["fed"].items():
            sampled = record["sampled"][step]
            assert sampled["rows"] == ROWS[i], f"step {step}: process {i} built rows {sampled['rows']}"
            assert fed == sampled["hash"], f"step {step}: process {i} fed other data than it sampled"
            start, stop = ROWS[i]
            assert sampled["hashes"] == reference["sampled"][step]["hashes"][start:stop], (
                f"step {step}: process {i}'s rows differ from rows {start}-{stop} of the one-process batch"
            )


def check_identical_params(records: list[dict]) -> None:
    """Every process holds bit-identical parameters after every step."""
    steps = [set(r["params"]) for r in records]
    assert steps[0] == steps[1] and steps[0], steps
    for step in sorted(steps[0], key=int):
        shas = [r["params"][step]["sha"] for r in records]
        assert len(set(shas)) == 1, f"parameters differ between processes after step {step}: {shas}"


def swap_rows(records: list[dict]) -> list[dict]:
    """The records as if process 0 had built process 1's rows and vice versa."""
    a, b = (json.loads(json.dumps(r)) for r in records)
    a["sampled"], b["sampled"] = b["sampled"], a["sampled"]
    a["fed"], b["fed"] = b["fed"], a["fed"]
    return [a, b]


@pytest.mark.slow
@pytest.mark.timeout(2 * PHASE_TIMEOUT + 40)
def test_each_process_builds_its_rows_of_the_one_process_global_batch_and_a_swap_is_caught(runs):
    assert (
        runs["a0"]["process_count"] == 2 and runs["a0"]["local_devices"] == 2 and runs["a0"]["devices"] == 4
    )
    assert runs["ref"]["process_count"] == 1 and runs["ref"]["devices"] == 4
    assert len(runs["ref"]["sampled"]["1"]["hashes"]) == BATCH
    for phase in ("a", "b"):
        check_rows([runs[f"{phase}0"], runs[f"{phase}1"]], runs["ref"])
    with pytest.raises(AssertionError, match="process 0 built rows"):
        check_rows(swap_rows([runs["a0"], runs["a1"]]), runs["ref"])
    other = json.loads(json.dumps(runs["ref"]))
    other["sampled"]["3"]["hashes"][9] = "0" * 16
    with pytest.raises(AssertionError, match="step 3: process 1's rows differ"):
        check_rows([runs["a0"], runs["a1"]], other)


@pytest.mark.slow
def test_parameters_are_identical_on_both_processes_after_every_step(runs):
    check_identical_params([runs["a0"], runs["a1"]])
    check_identical_params([runs["b0"], runs["b1"]])
    assert sorted(runs["a0"]["params"], key=int) == [str(k) for k in range(1, STOP + 1)]  # stopped at 30
    assert sorted(runs["b0"]["params"], key=int) == [str(k) for k in range(STOP + 1, STEPS + 1)]  # resumed
    diverged = json.loads(json.dumps(runs["a1"]))
    diverged["params"]["2"]["sha"] = "0" * 16
    with pytest.raises(AssertionError, match="parameters differ between processes after step 2"):
        check_identical_params([runs["a0"], diverged])


@pytest.mark.slow
def test_two_processes_equal_one_process_after_60_steps_of_the_test_config(runs):
    ref = runs["ref"]
    for phase, steps in (("a", range(1, STOP + 1)), ("b", range(STOP + 1, STEPS + 1))):
        for step in map(str, steps):
            assert runs[f"{phase}0"]["params"][step]["sum"] == pytest.approx(
                ref["params"][step]["sum"], rel=1e-4
            )
    tmp = runs["tmp"]
    final_multi, final_single = np.load(tmp / "b0.json.npz"), np.load(tmp / "ref.json.npz")
    assert sorted(final_multi.files) == sorted(final_single.files)
    for name in final_single.files:
        a, b = final_multi[name], final_single[name]
        relative = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert relative < 1e-4, (name, relative)  # (edsr-jax 0.1, with per-process shards: 11 %)


@pytest.mark.slow
def test_devices_handed_over_interleaved_train_as_the_process_major_mesh_does(runs):
    # The devices come as a TPU torus walk gives them (hosts interleaved); edsr-jax 0.1 stopped
    # here on both processes: "this process's devices hold rows [(0, 2), (4, 6)] of the batch".
    records = [runs["i0"], runs["i1"]]
    assert records[0]["requested"] == [0, 1, 0, 1]
    assert records[0]["mesh"] == records[1]["mesh"] == runs["a0"]["mesh"] == [0, 0, 1, 1]
    check_rows(records, runs["ref"])
    check_identical_params(records)
    steps = [str(k) for k in range(1, INTERLEAVED_STEPS + 1)]
    assert sorted(runs["i0"]["params"], key=int) == steps
    for step in steps:  # bit for bit the process-major run of phase 1
        assert runs["i0"]["params"][step]["sha"] == runs["a0"]["params"][step]["sha"], step


def stored_values(item_folder) -> list[dict[bytes, int]]:
    """For each process's OCDBT store of an Orbax item: {key: value bytes} (tensorstore reads it).

    Bytes on disk are no measure of duplication (OCDBT packs B-tree nodes and values into files
    whose sizes vary run to run); the keys each process wrote are.
    """
    import tensorstore as ts

    stores = []
    for sub in sorted(f for f in os.listdir(item_folder) if f.startswith("ocdbt.process_")):
        spec = {"driver": "ocdbt", "base": "file://" + os.path.join(str(item_folder), sub)}
        kv = ts.KvStore.open(spec).result()
        stores.append({k: len(kv.read(k).result().value) for k in kv.list().result()})
    return stores


@pytest.mark.slow
def test_checkpoints_are_written_once_and_both_processes_resume_from_them(runs):
    tmp = runs["tmp"]
    multi, single = tmp / "multi", tmp / "single"
    saved = [str(k) for k in range(10, STEPS + 1, 10)]
    assert runs["steps_after_phase_1"] == saved[:3]
    assert sorted(os.listdir(multi / "checkpoints"), key=int) == saved  # one folder per step, no leftovers
    for item in ("params", "train"):  # each value written once, by one of the two processes
        per_process = stored_values(multi / "checkpoints" / str(STEPS) / item)
        (one,) = stored_values(single / "checkpoints" / str(STEPS) / item)
        assert len(per_process) == 2, (item, len(per_process))
        a, b = per_process
        assert not set(a) & set(b), (item, sorted(set(a) & set(b))[:5])
        assert set(a) | set(b) == set(one), (item, sorted(set(one) ^ (set(a) | set(b)))[:5])
        # Same keys, so about the same (compressed) bytes: not empty, not a second copy.
        assert 0.9 < (sum(a.values()) + sum(b.values())) / sum(one.values()) < 1.1, item
    files = {f for f in os.listdir(multi) if not f.startswith(".")}
    events = {f for f in files if f.startswith("events.out.tfevents.")}
    assert files - events == {"checkpoints", "model.json", "parameters.txt"}
    assert len(events) == 2  # TensorBoard events from process 0 only, one file per phase (run)
    logs = {n: open(tmp / f"b{n}.log").read() for n in range(2)}
    assert f"resumed from {multi / 'checkpoints'} at step {STOP}" in logs[0]
    assert "resumed from" not in logs[1] and f"step {STEPS}/{STEPS}" not in logs[1]  # only process 0 logs
    assert runs["b1"]["final_step"] == STEPS
    import edsr_jax

    _, variables = edsr_jax.load_model(str(multi))  # the 2-process checkpoint, read by one process
    final = np.load(tmp / "b0.json.npz")
    np.testing.assert_array_equal(
        np.asarray(variables["params"]["head"]["kernel"]), final["['head']['kernel']"]
    )


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step_and_both_resume(tmp_path):
    # A preemption notice reaching one host of a pod: JAX's preemption notifier and Orbax's sync
    # point must make both processes save the same step and exit 0 (no hang in a collective).
    image_cache, xla_cache = str(tmp_path / "images"), str(tmp_path / "xla")
    env, workdir, total, signal_after = worker_env(2, xla_cache), tmp_path / "w", 200, 10

    def pair(name, steps):
        address = f"127.0.0.1:{free_port()}"
        return [
            (
                [
                    "--without-tensorflow",
                    "--steps",
                    str(steps),
                    "--cache-dir",
                    image_cache,
                    "--workdir",
                    str(workdir),
                    "--out",
                    str(tmp_path / f"{name}{i}.json"),
                    "--coordinator",
                    address,
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
                env,
                str(tmp_path / f"{name}{i}.log"),
            )
            for i in range(2)
        ]

    sent = []

    def sigterm_process_1(procs):
        if not sent and f"step {signal_after}/{total}" in open(tmp_path / "a0.log").read():
            os.kill(procs[1].pid, signal.SIGTERM)
            sent.append(True)

    run_phase(pair("a", total), during=sigterm_process_1)
    assert sent, "process 0 never logged step 4"
    stopped = [load(tmp_path / f"a{i}.json")["final_step"] for i in range(2)]
    assert stopped[0] == stopped[1] and signal_after <= stopped[0] < total, stopped
    assert "SIGTERM caught" in open(tmp_path / "a1.log").read()  # JAX's notifier, not a kill
    assert str(stopped[0]) in os.listdir(workdir / "checkpoints")

    run_phase(pair("b", stopped[0] + 2))
    assert f"resumed from {workdir / 'checkpoints'} at step {stopped[0]}" in open(tmp_path / "b0.log").read()
    resumed = [load(tmp_path / f"b{i}.json") for i in range(2)]
    assert [r["final_step"] for r in resumed] == [stopped[0] + 2] * 2
    last = str(stopped[0] + 2)
    assert resumed[0]["params"][last]["sha"] == resumed[1]["params"][last]["sha"]
