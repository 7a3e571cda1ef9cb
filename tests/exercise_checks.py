"""The fixture the chapter exercise tests share: every check runs twice, as the notebook's visible check and as its
hidden tests (``camlab.course.student.run_check_cell``), so both parts are shown to pass the right answer and to fail
plausible wrong ones."""
import pytest

from camlab.course.student import run_check_cell


@pytest.fixture(params=[False, True], ids=["visible", "hidden"])
def check(request):
    """``check(exercise, answer) -> passed``: the instructor's check cell of ``exercise`` (e.g. "ch01_cam")."""
    return lambda exercise, answer: run_check_cell(exercise, answer, hidden=request.param)


#: two grading seeds (the instructor's notebook uses HIDDEN_SEED = 0; grading derives another from the secret)
HIDDEN_SEEDS = [0, 987_654_321]


def drawn_cases_differ_by_seed(kinds) -> bool:
    """The hidden cases of ``kinds`` (a chapter module's list of case makers) are the same for the same seed and
    differ for another seed: they are drawn at grading time, not written in a notebook."""
    from camlab.exercises._checking import cases_from_kinds

    first, again, other = (repr(cases_from_kinds(seed, kinds)) for seed in (HIDDEN_SEEDS[0], HIDDEN_SEEDS[0],
                                                                            HIDDEN_SEEDS[1]))
    return first == again and first != other
