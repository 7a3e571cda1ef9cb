"""The students' versions (``notebooks/student/``, written by ``camlab course badges``) have stubs that raise until a
student fills them in: nbval runs only the instructor's notebooks here."""
collect_ignore_glob = ["student/*.ipynb"]
