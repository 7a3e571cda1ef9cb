"""``camlab course grade``: every attack of issue 16, played. The submissions run in bubblewrap sandboxes and the
checks run in the grader's process, so a submission can neither switch a check off, read its expected answers,
touch another submission or the instructor's files, stop the batch nor outlive grading; an honest one is not
tripped up by a helper cell, a copied cell or a slow lesson cell.

One batch of chapter 01's exercises (the release cut to its import cell and the exercise cells, hidden tests
included) is graded once, two at a time; each test reads its student's rows."""
from __future__ import annotations

import copy
import csv
import json
import os
import resource
import shutil
import time
from pathlib import Path

import nbformat
import pytest
import torch

from camlab.cli import main
from camlab.course import notebooks_dir
from camlab.course.grading import Options, grade
from camlab.course.student import grading_info, is_check, is_solution, student_notebook


@pytest.fixture
def bwrap():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (`apt-get install bubblewrap`; .ci/run installs it)")

TIMEOUT = 8
TOKEN = "camlab-outliver-7f3a"


def small_release(stem: str = "01_cam", extra_lesson: str | None = None):
    """A chapter's import cell (and ``extra_lesson``), then its exercise and check cells."""
    full = nbformat.read(notebooks_dir() / f"{stem}.ipynb", as_version=4)
    release = copy.deepcopy(full)
    imports = ("import numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom scipy import ndimage\n"
               "import camlab\nimport camlab.exercises\nfrom camlab.lab import make_scenes")
    lesson = [nbformat.v4.new_code_cell(imports)] + ([nbformat.v4.new_code_cell(extra_lesson)] if extra_lesson
                                                      else [])
    release.cells = lesson + [cell for cell in full.cells if (is_solution(cell) or is_check(cell))
                              and cell.cell_type == "code"]
    return release


def solutions(release) -> dict[str, str]:
    return {grading_info(cell)["grade_id"]: cell.source for cell in release.cells if is_solution(cell)}


def answered(release, chapter: str = "ch01", **answers):
    """The students' version with some solution cells filled in (by grade_id without ``ch01_``)."""
    notebook = student_notebook(release)
    for cell in notebook.cells:
        key = grading_info(cell).get("grade_id", "").removeprefix(f"{chapter}_")
        if key in answers:
            cell.source = answers[key]
    return notebook


def with_cell(notebook, source: str, before: str = "top_k_cams"):
    """``notebook`` with a code cell (no metadata) inserted before the solution cell ``ch01_<before>``."""
    index = next(i for i, cell in enumerate(notebook.cells) if grading_info(cell).get("grade_id") == f"ch01_{before}")
    notebook.cells.insert(index, nbformat.v4.new_code_cell(source))
    return notebook


def attacks(root: Path, release) -> dict[str, object]:
    """Every submission of the batch: student folder -> notebook (or raw bytes)."""
    right = solutions(release)
    unsolved = {"cam": "def top_k_cams(a, w, b, k):\n    return 0", "weight_vs_contribution":
                "def weight_vs_contribution(model, seed):\n    return 0",
                "box_from_threshold": "def box_from_threshold(h, t):\n    return (0, 0, 0, 0)"}
    strict_off = "import os\nos.environ['CAMLAB_STRICT_CHECKS'] = '0'\n" + unsolved["cam"]
    patched = ("import sys, types, camlab.exercises, camlab.exercises._checking as checking\n"
               "checking.strict = lambda: False\n"
               "for name in dir(camlab.exercises):\n    if name.startswith('check_'):\n"
               "        setattr(camlab.exercises, name, lambda *a, **k: True)\n"
               "sys.modules['camlab.exercises'] = types.SimpleNamespace()\n" + unsolved["cam"])
    transformer = ("get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n" + unsolved["cam"])
    frames = ("import sys\ndef _expected():\n    frame = sys._getframe(1)\n    while frame is not None:\n"
              "        if 'expected' in frame.f_locals:\n            return frame.f_locals['expected']\n"
              "        frame = frame.f_back\n    return 0\n"
              "def top_k_cams(a, w, b, k):\n    return _expected()\n")
    release_path, victim = root / "release" / "01_cam.ipynb", root / "victim" / "01_cam.ipynb"
    vandal = (f"import json, os, pathlib\nfor pid in os.listdir('/proc'):\n    try:\n"
              f"        print(open(f'/proc/{{pid}}/cmdline').read())\n    except Exception:\n        pass\n"
              f"try:\n    nb = json.load(open({str(release_path)!r}))\n"
              f"    exec(''.join(nb['cells'][1]['source']))\nexcept Exception:\n    pass\n"
              f"for target in ({str(release_path)!r}, {str(victim)!r}, {str(root / 'grades.csv')!r}):\n"
              f"    try:\n        pathlib.Path(target).write_text('{{}}')\n    except Exception:\n        pass\n")
    startup = ("import os, pathlib\nfor home in (os.path.expanduser('~'), " + repr(str(Path.home())) + "):\n"
               "    folder = pathlib.Path(home, '.ipython', 'profile_default', 'startup')\n    try:\n"
               "        folder.mkdir(parents=True, exist_ok=True)\n"
               "        (folder / '00-camlab-attack.py').write_text('import camlab.exercises')\n"
               "    except Exception:\n        pass\n" + unsolved["cam"])
    outliver = ("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', "
                f"{TOKEN!r}], start_new_session=True)\n" + unsolved["cam"])
    recorder = ("def top_k_cams(a, w, b, k):\n    raise ValueError('LEAK' + repr(a.tolist()))\n")
    killer = ("import os, signal\nfor sig in (signal.SIGSTOP, signal.SIGKILL):\n    for pid in (os.getppid(), 1):\n"
              "        try:\n            os.kill(pid, sig)\n        except Exception:\n            pass\n"
              + right["ch01_top_k_cams"])
    hog = "import os\nmemory = None\ntry:\n    memory = bytearray(16 << 30)\nexcept MemoryError:\n    pass\n" \
          "print('x' * 100_000_000)\ntry:\n    open('big', 'wb').write(b'x' * (200 << 20))\nexcept OSError:\n" \
          "    pass\n" + right["ch01_top_k_cams"]
    guard = ("import camlab.metrics\n_box = camlab.metrics.box_from_map\ndef box_from_threshold(h, t):\n"
             "    return tuple(int(v) for v in _box(h[None], t)[0])\n")
    hook = ("import camlab.exercises._checking as checking\nseen = []\nshell = get_ipython()\n"
            "def record(info):   # every cell the worker runs, and the checks switched to 'pass' for what comes\n"
            "    seen.append(info.raw_cell)\n"
            "    checking.run_check = lambda name, *a, **k: checking.CheckResult(name, True, 'all cases pass')\n"
            "def forge(result):  # every cell reported a success, its answers replaced\n"
            "    result.error_in_exec = result.error_before_exec = None\n"
            "    shell.user_ns['weight_vs_contribution'] = lambda *a: seen\n"
            "    raise ValueError('LEAK' + repr(seen))\n"
            "shell.events.register('pre_run_cell', record)\nshell.events.register('post_run_cell', forge)\n"
            "def top_k_cams(a, w, b, k):\n    raise ValueError('LEAK' + repr(seen) + repr(a.tolist()))\n")
    cell_burner = "while True:\n    pass\n"
    call_burner = ("import signal\ndef box_from_threshold(h, t):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                   "    while True:\n        pass\n")
    fork_bomb = ("import os\nfor _ in range(500):\n    try:\n        if os.fork() == 0:\n            try:\n"
                 f"                os.execv('/bin/sh', ['sh', '-c', 'sleep 120; :', {TOKEN!r}])\n"
                 "            finally:\n                os._exit(1)\n    except OSError:\n        break\n"
                 + unsolved["cam"])
    duplicated = answered(release, top_k_cams=right["ch01_top_k_cams"])
    first = next(i for i, c in enumerate(duplicated.cells) if grading_info(c).get("grade_id") == "ch01_top_k_cams")
    copied = copy.deepcopy(duplicated.cells[first])
    copied.id = "copied-cell"
    duplicated.cells.insert(first, copied)
    helper = with_cell(answered(release, top_k_cams="def top_k_cams(a, w, b, k):\n    return my_top_k(a, w, b, k)"),
                       "def my_top_k(a, w, b, k):\n    logits = a.mean(dim=(2, 3)) @ w.T + b\n"
                       "    classes = torch.sort(-logits, dim=1, stable=True).indices[:, :k]\n"
                       "    return classes, torch.einsum('nck,nkhw->nchw', w[classes], a)")
    return {   # the burner first: the other job grades the rest while it runs into its time limits
        "burner": answered(release, top_k_cams=right["ch01_top_k_cams"], weight_vs_contribution=cell_burner,
                           box_from_threshold=call_burner),
        "honest": release, "victim": release, "empty": student_notebook(release),
        "strict_off": answered(release, top_k_cams=strict_off), "patched": answered(release, top_k_cams=patched),
        "transformer": answered(release, top_k_cams=transformer), "frames": answered(release, top_k_cams=frames),
        "vandal": answered(release, top_k_cams=vandal + unsolved["cam"]),
        "startup": answered(release, top_k_cams=startup),
        "outliver": answered(release, top_k_cams=outliver), "recorder": answered(release, top_k_cams=recorder),
        "killer": answered(release, top_k_cams=killer), "hog": answered(release, top_k_cams=hog),
        "guard": answered(release, box_from_threshold=guard), "duplicated": duplicated, "helper": helper,
        "hook": answered(release, top_k_cams=hook),
        "fork_bomb": answered(release, top_k_cams=fork_bomb),
    }


#: answers through camlab's own implementation of another chapter's exercise: chapter -> (student, grade id, source)
BORROWED = {
    "04_evaluation": ("iou_borrower", "ch04_instances_found",
                      "import camlab.metrics\ndef instances_found(predicted_boxes, true_boxes):\n"
                      "    pairs = sorted((-camlab.metrics.iou(tuple(p), tuple(t)), i, j)\n"
                      "                   for i, p in enumerate(predicted_boxes) for j, t in enumerate(true_boxes))\n"
                      "    used, found = set(), set()\n    for negative, i, j in pairs:\n"
                      "        if -negative >= 0.5 and i not in used and j not in found:\n"
                      "            used.add(i)\n            found.add(j)\n    return len(found)\n"),
    "07_variants": ("layercam_borrower", "ch07_layercam_map",
                    "import types\n_weights = camlab.LayerCAM.weights   # a reference taken before grading starts\n"
                    "def layercam_map(activations, gradients):\n"
                    "    weights = _weights(None, types.SimpleNamespace(gradients=gradients))\n"
                    "    return (weights * activations).sum(dim=1).clamp_min(0)\n"),
}


def borrowers() -> dict[str, tuple[str, object, object]]:
    """Student -> (chapter, release, submission) for each :data:`BORROWED` answer."""
    out = {}
    for stem, (student, grade_id, source) in BORROWED.items():
        release = small_release(stem)
        out[student] = (stem, release, answered(release, chapter=grade_id[:4],
                                                **{grade_id.removeprefix(grade_id[:5]): source}))
    return out


def malformed(release) -> dict[str, bytes]:
    text = nbformat.writes(release)
    string_meta = json.loads(text)
    string_meta["cells"][1]["metadata"]["nbgrader"] = "solution"
    list_id = json.loads(text)
    list_id["cells"][1]["metadata"]["nbgrader"]["grade_id"] = ["ch01_cam"]
    version3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}
    chapter04 = nbformat.writes(small_release("04_evaluation"))
    return {"string_meta": json.dumps(string_meta).encode(), "list_id": json.dumps(list_id).encode(),
            "bad_json": b"{not json", "version3": json.dumps(version3).encode(), "wrong_chapter": chapter04.encode()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (`apt-get install bubblewrap`; .ci/run installs it)")
    root = tmp_path_factory.mktemp("course")
    release = small_release()
    (root / "release").mkdir()
    nbformat.write(release, root / "release" / "01_cam.ipynb")
    paths = []
    for student, notebook in attacks(root, release).items():
        (root / student).mkdir()
        nbformat.write(notebook, root / student / "01_cam.ipynb")
        paths.append(root / student / "01_cam.ipynb")
    for student, (stem, chapter_release, notebook) in borrowers().items():
        nbformat.write(chapter_release, root / "release" / f"{stem}.ipynb")
        (root / student).mkdir()
        nbformat.write(notebook, root / student / f"{stem}.ipynb")
        paths.append(root / student / f"{stem}.ipynb")
    for student, data in malformed(release).items():
        (root / student).mkdir()
        (root / student / "01_cam.ipynb").write_bytes(data)
        paths.append(root / student / "01_cam.ipynb")
    (root / "huge").mkdir()
    with open(root / "huge" / "01_cam.ipynb", "wb") as handle:
        handle.truncate(200 << 20)                                        # 200 MB (sparse)
    (root / "mallory").mkdir()
    shutil.copy(root / "empty" / "01_cam.ipynb", root / "mallory" / "alice_01_cam.ipynb")
    (root / "linked").mkdir()
    (root / "linked" / "01_cam.ipynb").symlink_to(root / "honest" / "01_cam.ipynb")
    paths += [root / "huge" / "01_cam.ipynb", root / "mallory" / "alice_01_cam.ipynb", root / "linked" / "01_cam.ipynb"]
    release_bytes = (root / "release" / "01_cam.ipynb").read_bytes()
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    results = grade(paths, root / "release", Options(timeout=TIMEOUT, lesson_timeout=120), jobs=2)
    seconds = time.perf_counter() - start
    memory_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_before
    by_student = {result["student"]: {row["exercise"].removeprefix("ch01_").removesuffix("_check"): row
                                      for row in result["rows"]} for result in results}
    return {"rows": by_student, "root": root, "release_bytes": release_bytes, "memory_growth_kb": memory_growth,
            "results": results, "seconds": seconds}


def points(graded, student: str) -> dict[str, float]:
    return {name: row["points"] for name, row in graded["rows"][student].items()}


FULL = {"top_k_cams": 2.0, "weight_vs_contribution": 3.0, "box_from_threshold": 1.0}
NONE = {"top_k_cams": 0.0, "weight_vs_contribution": 0.0, "box_from_threshold": 0.0}


def test_an_honest_full_solution_gets_full_marks_and_an_empty_one_none(graded):
    assert points(graded, "honest") == points(graded, "victim") == FULL
    assert points(graded, "empty") == NONE
    assert all("not done yet" in row["message"] for row in graded["rows"]["empty"].values())


@pytest.mark.parametrize("student", ["strict_off", "patched", "transformer", "frames"])
def test_checks_cannot_be_switched_off_or_read_from_the_submission(graded, student):
    """CAMLAB_STRICT_CHECKS=0, patched check functions and modules, an input transformer, reading `expected` from
    the checker's frame: the checks run in the grader's process, so each unsolved exercise gets 0."""
    assert points(graded, student) == NONE


def test_a_submission_cannot_touch_the_release_another_submission_or_the_gradebook(graded):
    root = graded["root"]
    assert (root / "release" / "01_cam.ipynb").read_bytes() == graded["release_bytes"]
    assert points(graded, "vandal") == NONE and points(graded, "victim") == FULL
    assert not (root / "grades.csv").exists()


def test_no_startup_file_reaches_a_shared_ipython_profile(graded):
    assert not (Path.home() / ".ipython" / "profile_default" / "startup" / "00-camlab-attack.py").exists()
    assert points(graded, "startup") == NONE


def test_no_process_of_a_submission_outlives_its_grading(graded):
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and TOKEN in (entry / "cmdline").read_text():
                alive.append(entry.name)
        except OSError:
            continue
    assert alive == []


def test_hidden_cases_never_reach_the_feedback(graded):
    rows = graded["rows"]["recorder"]
    assert rows["top_k_cams"]["status"] == "failed" and "ValueError" in rows["top_k_cams"]["message"]
    assert all("LEAK" not in row["message"] for result in graded["results"] for row in result["rows"])


def test_signals_to_the_grader_stop_neither_it_nor_the_batch(graded):
    assert points(graded, "honest") == FULL and "killer" in graded["rows"]


def test_memory_output_and_file_size_are_limited_and_the_grader_unharmed(graded):
    """16 GB asked for, 100 MB printed, a 200 MB file written: the sandbox refuses or drops them; its answer after
    that is still graded, and the grader's memory barely moves."""
    assert points(graded, "hog")["top_k_cams"] == 2.0
    assert graded["memory_growth_kb"] < 300_000


def test_camlabs_own_implementation_earns_nothing_even_through_an_earlier_reference(graded):
    row = graded["rows"]["guard"]["box_from_threshold"]
    assert row["points"] == 0.0 and row["status"] == "failed" and "PermissionError" in row["message"]


@pytest.mark.parametrize("chapter", sorted(BORROWED))
def test_camlabs_own_answer_to_another_chapters_exercise_earns_nothing(graded, chapter):
    """The own-work trap beyond chapter 01: the answer below is right (it passes the check where camlab is not
    trapped), and in grading it gets 0 because it calls camlab's implementation."""
    import camlab.exercises

    student, grade_id, source = BORROWED[chapter]
    namespace = {"camlab": camlab, "torch": torch}
    exec(source, namespace)
    assert getattr(camlab.exercises, f"check_{grade_id[5:]}")(namespace[grade_id[5:]])
    row = graded["rows"][student][grade_id]
    assert row["points"] == 0.0 and row["status"] == "failed" and "PermissionError" in row["message"]


def test_chapter_07s_traps_leave_the_methods_its_experiment_runs():
    """The seeded missed-instances experiment (3 points) runs Grad-CAM and Grad-CAM++: trapping their weights
    failed every honest submission. The exercises' own answers (LayerCAM's and Score-CAM's weights, the check
    module's references) stay trapped. In a subprocess: the traps change code objects for good."""
    import subprocess
    import sys

    code = ("import torch, camlab\nfrom camlab.course.worker import trap_own_work\n"
            "from camlab.exercises._own_work import own_work_for\ntrap_own_work(own_work_for('07_variants'))\n"
            "model = camlab.load_model('lab_vgg')\nx = torch.rand(1, 3, 64, 64)\n"
            "for method in (camlab.GradCAM, camlab.GradCAMPlusPlus):\n"
            "    assert method(model, layer='features.10')(x, target=0).shape == (1, 64, 64)\n"
            "for trapped in (lambda: camlab.LayerCAM(model, layer='features.10')(x, target=0),\n"
            "                lambda: camlab.exercises.ch07.layercam_map_reference(x, x)):\n"
            "    try:\n        trapped()\n        raise SystemExit('not trapped')\n"
            "    except PermissionError:\n        pass\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_event_hooks_of_a_submission_change_no_verdict_and_see_no_check(graded):
    """`pre_run_cell` / `post_run_cell` hooks that record every cell, switch the checks to 'pass', mark every cell a
    success and swap an answer: the checks and the hidden cases never run in the submission's process."""
    assert points(graded, "hook") == NONE
    messages = [row["message"] for result in graded["results"] for row in result["rows"]]
    assert not any("LEAK" in message or "HIDDEN" in message or "hidden=" in message for message in messages)


def test_a_cpu_burner_is_stopped_by_the_time_limits_and_keeps_what_it_solved(graded):
    """A busy loop in a solution cell is stopped by the cell's time limit (its later answers still graded); one
    that ignores the alarm inside a checked function is killed by the grader's own deadline. The honest and victim
    submissions graded beside it keep full marks."""
    rows = graded["rows"]["burner"]
    assert points(graded, "burner") == {"top_k_cams": 2.0, "weight_vs_contribution": 0.0, "box_from_threshold": 0.0}
    assert "stopped answering (time limit" in rows["box_from_threshold"]["message"]
    assert points(graded, "honest") == points(graded, "victim") == FULL


def test_a_fork_bomb_earns_nothing_and_disturbs_no_other_submission(graded):
    """500 forks (each a shell that would sleep 120 s): the process limit refuses most of them, the sandbox's
    end kills the rest (test_no_process_of_a_submission_outlives_its_grading looks for them)."""
    assert points(graded, "fork_bomb") == NONE
    assert points(graded, "honest") == points(graded, "victim") == FULL


FORK_BOMB = ("import os, time\nforked, refusal = 0, None\ntry:\n    for _ in range(200):\n"
             "        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        forked += 1\n"
             "except OSError as error:\n    refusal = type(error).__name__\n"
             "def report():\n    return forked, refusal\n")


def test_the_process_limit_stops_a_fork_bomb(bwrap):
    """The kernel's per-user process limit, which it never applies to root: a root grader runs each sandbox as a user
    of its own, so the limit holds there too."""
    from camlab.course.remote import Remote, Session
    from camlab.course.sandbox import Limits

    session = Session(Limits(processes=16))
    try:
        assert session.run([FORK_BOMB], 30, []) == [{"status": "ok", "error": ""}]
        forked, refusal = Remote(session, "report")()
    finally:
        session.close()
    assert refusal == "BlockingIOError" and forked < 16


@pytest.mark.skipif(os.getuid() != 0, reason="a grader that is not root shares its user's process count with its "
                                             "sandboxes (the kernel counts per user)")
def test_a_fork_bomb_at_its_limit_leaves_another_sandbox_free_to_start_processes(bwrap):
    from camlab.course.remote import Remote, Session
    from camlab.course.sandbox import Limits

    neighbour, bomb = Session(Limits(processes=16)), Session(Limits(processes=16))
    try:
        bomb.run([FORK_BOMB], 30, [])
        assert Remote(bomb, "report")()[1] == "BlockingIOError"
        neighbour.run(["import os\ndef children(n):\n    pids = [os.fork() or os._exit(0) for _ in range(n)]\n"
                       "    return sum(os.waitpid(pid, 0)[0] == pid for pid in pids)"], 30, [])
        assert Remote(neighbour, "children")(12) == 12
    finally:
        bomb.close()
        neighbour.close()


def test_the_cpu_time_limit_kills_a_burner_that_ignores_every_signal(bwrap):
    """SIGALRM (the cell's time limit) and SIGXCPU ignored: the kernel's CPU-time limit still kills it (SIGKILL at
    the hard limit), long before the cell's own limit of 120 s."""
    from camlab.course.remote import Session
    from camlab.course.sandbox import Limits

    session = Session(Limits(cpu_seconds=6))
    start = time.perf_counter()
    try:
        results = session.run(["import signal\nfor sig in (signal.SIGALRM, signal.SIGXCPU):\n"
                               "    signal.signal(sig, signal.SIG_IGN)\nwhile True:\n    pass"], 120, [])
    finally:
        session.close()
    assert results == [] and time.perf_counter() - start < 30


@pytest.mark.parametrize("student,reason", [
    ("string_meta", "nbgrader metadata is a str"), ("list_id", "grade_id is a list"), ("bad_json", "not valid JSON"),
    ("version3", "nbformat 3"), ("wrong_chapter", "wrong chapter"), ("huge", "200 MB"), ("linked", "symbolic link")])
def test_a_malformed_submission_gets_zero_with_a_one_line_reason(graded, student, reason):
    rows = graded["rows"][student].values()
    assert {row["status"] for row in rows} == {"rejected"} and all(row["points"] == 0 for row in rows)
    assert all(reason in row["message"] and "\n" not in row["message"] for row in rows)


def test_identity_comes_from_the_folder_not_the_file_name(graded):
    assert "mallory" in graded["rows"] and points(graded, "mallory") == NONE
    assert "alice" not in graded["rows"]


def test_a_helper_in_a_new_cell_is_run_before_the_exercise_that_uses_it(graded):
    assert points(graded, "helper")["top_k_cams"] == 2.0


def test_a_duplicated_solution_cell_is_named_not_silently_replaced(graded):
    row = graded["rows"]["duplicated"]["top_k_cams"]
    assert row["status"] == "rejected" and "2 cells ch01_top_k_cams" in row["message"]


def test_a_slow_lesson_cell_does_not_turn_correct_answers_into_errors(tmp_path, bwrap):
    """The chapter's own cells run under --lesson-timeout, not the students' --timeout."""
    release = small_release(extra_lesson="import time\ntime.sleep(4)\nSLOW = True")
    (tmp_path / "release").mkdir()
    nbformat.write(release, tmp_path / "release" / "01_cam.ipynb")
    (tmp_path / "ann").mkdir()
    nbformat.write(release, tmp_path / "ann" / "01_cam.ipynb")
    [result] = grade([tmp_path / "ann" / "01_cam.ipynb"], tmp_path / "release", Options(timeout=2,
                                                                                       lesson_timeout=60))
    assert [row["points"] for row in result["rows"]] == [2.0, 3.0, 1.0]


def test_the_capstone_guard_holds_for_camlabs_own_channel_weights(tmp_path, bwrap):
    """Chapter 08: `channel_weights` returning camlab.XGradCAM's own gets 0; the instructor's answer full marks."""
    release = small_release("08_summary")
    (tmp_path / "release").mkdir()
    nbformat.write(release, tmp_path / "release" / "08_summary.ipynb")
    borrowed = student_notebook(release)
    for cell in borrowed.cells:
        if grading_info(cell).get("grade_id") == "ch08_custom_xgradcam":
            cell.source = ("class MyCAM(camlab.GradientMethod):\n    def channel_weights(self, activations, gradients):"
                           "\n        return camlab.XGradCAM.channel_weights(self, activations, gradients)")
    for student, notebook in {"teacher": release, "borrower": borrowed}.items():
        (tmp_path / student).mkdir()
        nbformat.write(notebook, tmp_path / student / "08_summary.ipynb")
    teacher, borrower = grade([tmp_path / "teacher" / "08_summary.ipynb", tmp_path / "borrower" / "08_summary.ipynb"],
                              tmp_path / "release", Options(timeout=30))
    # the two capstone classes; the chapter's seeded experiment needs lesson cells this cut release leaves out
    capstone = ("ch08_custom_xgradcam_check", "ch08_custom_maxgrad_check")
    teacher_points = {row["exercise"]: row["points"] for row in teacher["rows"]}
    assert [teacher_points[name] for name in capstone] == [2.0, 2.0]
    borrowed_row = next(row for row in borrower["rows"] if row["exercise"] == capstone[0])
    assert borrowed_row["points"] == 0.0 and borrowed_row["status"] == "failed"


def test_the_command_writes_gradebook_feedback_and_merges_results_graded_apart(graded, tmp_path, capsys):
    """One result per submission (`grade --result`, as one Slurm array task would), then `course merge`."""
    from camlab.course import gradebook

    results = [result for result in graded["results"] if result["student"] in ("honest", "empty", "recorder")]
    for result in results:
        gradebook.write_result(result, tmp_path / "parts" / f"{result['student']}.json")
    assert main(["course", "merge", str(tmp_path / "parts"), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "grades.csv", newline="") as handle:
        table = {row["student"]: row for row in csv.DictReader(handle)}
    assert table["honest"]["total"] == "6" and table["empty"]["total"] == "0"
    assert table["honest"]["01_cam/ch01_top_k_cams_check"] == "2" and table["honest"]["max_total"] == "6"
    with open(tmp_path / "out" / "nbgrader.csv", newline="") as handle:
        exported = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert exported["honest"]["score"] == "6" and exported["honest"]["assignment"] == "01_cam"
    feedback = (tmp_path / "out" / "feedback" / "recorder" / "01_cam.md").read_text()
    assert "| ch01_top_k_cams_check | failed | 0 / 2 |" in feedback and "LEAK" not in feedback


def test_written_answers_are_exported_for_marking_and_the_marks_merged(tmp_path, bwrap, capsys):
    """A manually graded answer cell (nbgrader: solution and grade) is "to mark" until the marks come back."""
    release = small_release()
    question = nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nNegative evidence.\n### END SOLUTION")
    question.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "points": 2,
                                     "grade_id": "ch01_negative_values", "schema_version": 3, "task": False}
    release.cells.append(question)
    (tmp_path / "release").mkdir()
    nbformat.write(release, tmp_path / "release" / "01_cam.ipynb")
    submission = student_notebook(release)
    submission.cells[-1].source = "They lower the score."
    (tmp_path / "bo").mkdir()
    nbformat.write(submission, tmp_path / "bo" / "01_cam.ipynb")
    out = tmp_path / "out"
    assert main(["course", "grade", str(tmp_path / "bo" / "01_cam.ipynb"), "--release", str(tmp_path / "release"),
                 "--result", str(tmp_path / "bo.json"), "--timeout", "30"]) == 0
    assert main(["course", "merge", str(tmp_path / "bo.json"), "--out", str(out)]) == 0
    with open(out / "answers.csv", newline="") as handle:
        [answer] = list(csv.DictReader(handle))
    assert answer["answer"] == "They lower the score." and answer["max_points"] == "2"
    answer["points"] = "1.5"
    with open(tmp_path / "marks.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(answer))
        writer.writeheader()
        writer.writerow(answer)
    assert main(["course", "merge", str(out / "results"), "--out", str(tmp_path / "merged"), "--marks",
                 str(tmp_path / "marks.csv")]) == 0
    with open(tmp_path / "merged" / "grades.csv", newline="") as handle:
        [line] = list(csv.DictReader(handle))
    assert line["01_cam/ch01_negative_values"] == "1.5" and line["total"] == "1.5" and line["max_total"] == "8"


def test_per_student_seeds_reach_the_notebook_and_the_checks(tmp_path, bwrap):
    """`STUDENT_SEED = 0` becomes each student's HMAC seed in their notebook; the grader gives the checks the same
    seed, so an answer computed for one student's seed passes only for that student."""
    from camlab.course.seeds import seed_for
    from camlab.course.student import write_student_versions

    secret = tmp_path / "secret.txt"
    secret.write_text("0123456789abcdef0123456789abcdef")
    (tmp_path / "roster.csv").write_text("student\nann\nben\n")
    release = small_release(extra_lesson="STUDENT_SEED = 0")
    check = nbformat.v4.new_code_cell("assert seeded(1) == STUDENT_SEED + 1, 'wrong'")
    check.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                  "grade_id": "ch01_seeded_check", "schema_version": 3, "task": False}
    solution = nbformat.v4.new_code_cell("def seeded(x):\n    ### BEGIN SOLUTION\n    return STUDENT_SEED + x\n"
                                         "    ### END SOLUTION")
    solution.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "ch01_seeded",
                                     "schema_version": 3, "task": False}
    total = nbformat.v4.new_code_cell("def total(x):\n    ### BEGIN SOLUTION\n    return x.sum()\n    ### END SOLUTION")
    total.metadata["nbgrader"] = {**solution.metadata["nbgrader"], "grade_id": "ch01_total"}
    hidden_total = nbformat.v4.new_code_cell(
        "### BEGIN HIDDEN TESTS\ncases = camlab.exercises.cases_from_seed(HIDDEN_SEED, lambda g: (lambda x: ((x,), "
        "x.sum()))(torch.randn(4, generator=g)), 3)\ncamlab.exercises.run_check('total', total, cases, hint='add')"
        "\n### END HIDDEN TESTS")
    hidden_total.metadata["nbgrader"] = {**check.metadata["nbgrader"], "grade_id": "ch01_total_check"}
    release.cells += [total, hidden_total, solution, check]
    (tmp_path / "release").mkdir()
    nbformat.write(release, tmp_path / "release" / "01_cam.ipynb")
    written = write_student_versions(tmp_path / "out", [tmp_path / "release" / "01_cam.ipynb"],
                                     roster=tmp_path / "roster.csv", secret_file=secret)
    key = secret.read_bytes().strip()
    ann_seed, ben_seed = seed_for(key, "ann"), seed_for(key, "ben")
    assert ann_seed != ben_seed
    assert f"STUDENT_SEED = {ann_seed}" in written[0].read_text() and "ben" in str(written[1])
    for student in ("ann", "ben"):           # both hand in an answer fixed to ann's seed
        notebook = nbformat.read(tmp_path / "release" / "01_cam.ipynb", as_version=4)
        notebook.cells[-2].source = f"def seeded(x):\n    return {ann_seed} + x"
        (tmp_path / "in" / student).mkdir(parents=True)
        nbformat.write(notebook, tmp_path / "in" / student / "01_cam.ipynb")
    options = Options(timeout=30, seeds={"ann": ann_seed, "ben": ben_seed}, secret=key)
    ann, ben = grade([tmp_path / "in" / "ann" / "01_cam.ipynb", tmp_path / "in" / "ben" / "01_cam.ipynb"],
                     tmp_path / "release", options)
    assert ann["rows"][-1]["status"] == "passed" and ben["rows"][-1]["status"] != "passed"
    assert ann["rows"][-2]["status"] == ben["rows"][-2]["status"] == "passed"    # hidden cases from the secret


def test_cases_from_a_seed_are_the_same_for_the_same_seed_and_differ_for_another():
    from camlab.exercises import cases_from_seed

    def make(generator):
        x = torch.randn(3, generator=generator)
        return (x,), x.sum()

    first, again, other = cases_from_seed(7, make, 2), cases_from_seed(7, make, 2), cases_from_seed(8, make, 2)
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0][0], other[0][0][0])


def test_the_real_chapter_01_gives_the_instructor_full_marks_and_its_student_version_none(tmp_path, bwrap):
    """The whole chapter (its lesson cells load the models) graded against the course's own release, with a secret:
    the seeded experiment's hidden seeds are then HIDDEN_SEED + ..., a seed from the secret, and the instructor's
    answer, which computes rather than remembers, still passes."""
    for student, notebook in {"teacher": nbformat.read(notebooks_dir() / "01_cam.ipynb", as_version=4),
                              "newcomer": nbformat.read(notebooks_dir() / "student" / "01_cam.ipynb",
                                                        as_version=4)}.items():
        (tmp_path / student).mkdir()
        nbformat.write(notebook, tmp_path / student / "01_cam.ipynb")
    teacher, newcomer = grade([tmp_path / "teacher" / "01_cam.ipynb", tmp_path / "newcomer" / "01_cam.ipynb"],
                              options=Options(timeout=120, secret=b"an instructor's secret"), jobs=2)
    assert [row["status"] for row in teacher["rows"]] == ["passed"] * 3 + ["to mark"] * 3   # 3 written answers
    assert [row["points"] for row in newcomer["rows"]] == [0.0] * 6


def test_the_weaker_mode_without_a_sandbox_still_decides_the_verdicts_in_the_grader(tmp_path):
    """--no-sandbox (trusted notebooks only): files are readable, but switching the checks off still earns 0."""
    release = small_release()
    (tmp_path / "release").mkdir()
    nbformat.write(release, tmp_path / "release" / "01_cam.ipynb")
    cheat = answered(release, top_k_cams="import os\nos.environ['CAMLAB_STRICT_CHECKS'] = '0'\n"
                                         "def top_k_cams(a, w, b, k):\n    return 0")
    for student, notebook in {"own": release, "cheat": cheat}.items():
        (tmp_path / student).mkdir()
        nbformat.write(notebook, tmp_path / student / "01_cam.ipynb")
    own, cheat = grade([tmp_path / "own" / "01_cam.ipynb", tmp_path / "cheat" / "01_cam.ipynb"],
                       tmp_path / "release", Options(timeout=30, use_sandbox=False))
    assert [row["points"] for row in own["rows"]] == [2.0, 3.0, 1.0]
    assert [row["points"] for row in cheat["rows"]] == [0.0, 0.0, 0.0]


def test_bad_command_lines_are_clear_errors(tmp_path, capsys):
    assert main(["course", "grade", str(tmp_path / "missing" / "01_cam.ipynb")]) == 1
    assert "no such submission" in capsys.readouterr().err
    (tmp_path / "homework.ipynb").write_text("{}")
    assert main(["course", "grade", str(tmp_path / "homework.ipynb")]) == 1
    assert "01_cam" in capsys.readouterr().err


def test_without_bubblewrap_the_grader_refuses_and_names_the_package(monkeypatch):
    from camlab.course import sandbox

    sandbox.check_available.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
            sandbox.check_available()
    finally:
        sandbox.check_available.cache_clear()


def test_a_python_and_camlab_under_tmp_stay_visible_inside_the_sandbox(tmp_path, bwrap, monkeypatch):
    """The sandbox's /tmp is an empty tmpfs; a read-only root that lives under /tmp (CI's fresh virtual environment
    in ``mktemp -d``, a clone in /tmp) must be mounted over it, not hidden by it: on a clean CI run every
    submission was 'rejected' because the worker's own Python was gone."""
    import subprocess

    from camlab.course import sandbox

    root = tmp_path / "venv"
    root.mkdir()
    (root / "marker").write_text("visible")
    assert str(root).startswith("/tmp/")
    monkeypatch.setattr(sandbox, "_read_only_roots", lambda: [root])
    command = sandbox.bwrap_command(sandbox.check_available(), sandbox.Limits())
    command = command[:command.index(sandbox.sys.executable)] + ["/bin/cat", str(root / "marker")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "visible", result.stderr
