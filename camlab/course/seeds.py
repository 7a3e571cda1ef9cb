"""Per-student seeds: ``seed = HMAC-SHA256(instructor secret, student id)``, first 4 bytes (0 <= seed < 2**31).

The instructor keeps the secret in a file outside the repository and outside every folder a student sees (the
grader's sandbox never mounts it). ``camlab course student OUT --roster roster.csv --secret-file S`` writes one
notebook per student with the instructor cell's line ``STUDENT_SEED = 0`` set to that student's seed, and
``camlab course grade ... --roster roster.csv --secret-file S`` derives the same seed for each student (the
submission's folder name is the student id) and gives it to the checks as ``STUDENT_SEED``, so a check such as
``check_x(fn, seed=STUDENT_SEED)`` recomputes that student's expected answer. Without a secret every seed is 0."""
from __future__ import annotations

import csv
import hashlib
import hmac
from pathlib import Path


def read_secret(path: str | Path) -> bytes:
    secret = Path(path).read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: the secret has {len(secret)} bytes; use at least 16 random ones, e.g. "
                         "`python -c \"import secrets; print(secrets.token_hex(32))\" > secret.txt`")
    return secret


def seed_for(secret: bytes, student: str) -> int:
    """The student's seed (deterministic, different per student, unguessable without the secret)."""
    digest = hmac.new(secret, student.strip().encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def read_roster(path: str | Path) -> list[str]:
    """Student ids from a CSV with a ``student`` column (or the first column), in order, without duplicates."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path}: the roster is empty; it needs a 'student' column with one id per line")
    column = rows[0].index("student") if "student" in rows[0] else 0
    ids = [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: a student id appears twice in the roster")
    return ids


def seeds(roster: str | Path, secret_file: str | Path) -> dict[str, int]:
    secret = read_secret(secret_file)
    return {student: seed_for(secret, student) for student in read_roster(roster)}
