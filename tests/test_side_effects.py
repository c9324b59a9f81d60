"""Using edsr-jax as a library changes nothing process-wide (environment, JAX settings, hooks,
sys.modules, Pillow and matplotlib globals, the umask): a program that imports it, trains, loads,
upscales, scores, exports and plots sees its process as it was (``support/side_effect_probe.py``)."""

import json
import os
import subprocess
import sys

from support.paths import ROOT, TESTS

PROBE = os.path.join(TESTS, "support", "side_effect_probe.py")


def test_a_program_using_the_library_finds_its_process_as_it_was(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, PROBE, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["changed"] == {}
    assert report["planted_modules"] == []
    assert report["umask_calls"] == []
    assert os.path.exists(tmp_path / "model.safetensors") and os.path.exists(tmp_path / "sr.png")
