"""The fixture the chapter exercise tests share: every check runs twice, as the notebook's visible check and as its
hidden tests (``camlab.course.student.run_check_cell``), so both parts are shown to pass the right answer and to fail
plausible wrong ones."""
import pytest

from camlab.course.student import run_check_cell


@pytest.fixture(params=[False, True], ids=["visible", "hidden"])
def check(request):
    """``check(exercise, answer) -> passed``: the instructor's check cell of ``exercise`` (e.g. "ch01_cam")."""
    return lambda exercise, answer: run_check_cell(exercise, answer, hidden=request.param)
