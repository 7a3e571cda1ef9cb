"""Students in Colab install camlab as a wheel: the bundled data must travel inside it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import camlab, camlab._paths as paths
assert "site" in camlab.__file__, camlab.__file__
assert paths.data_dir().name == "_data", paths.data_dir()
assert {"cat", "coffee", "cat_and_coffee", "two_cats"} <= set(camlab.list_images())
assert camlab.load_image("cat").size == (451, 300)
lab = [name for name in camlab.list_models() if name.startswith("lab_")]
for name in lab:
    camlab.load_model(name)
print("ok", len(lab))
"""


def test_wheel_carries_the_images_and_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("torch_camlab-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
