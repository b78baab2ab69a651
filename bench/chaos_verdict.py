"""What one fault-matrix run proved: Moodle against PowerCampus, every welcome, every letter.

Truth is computed from the sandbox with the product's own decision function
(``enrolstream.demo_site.expected_active``: the mapping, the enrolment policy),
never from the harness's idea of the workload. Moodle "holds" a person in a
course when the enrolment is active *and* carries a role of ours (student,
instructor, secondary instructor): drops remove the role
(``consumer.drop_action = "remove_role"``). Which role is checked exactly by the
property test (``tests/adapters/test_apply_property.py``), not here.

* **lost**: PowerCampus enrols the person, Moodle does not hold them;
* **wrong**: Moodle holds them, PowerCampus does not; a role of ours without an
  enrolment; a teacher's enrolment changed;
* **welcome messages** (from the simulator's journal, ``sandbox/moodle_sim/audit.py``):
  for a new enrolment (expected), or for one that already existed. The latter is
  *explained* only when it comes from a request the client had given up on (held
  past its timeout, applied later), or lands on an enrolment that such a late
  request created after the consumer had read the course back (it could not
  know); any other is a defect;
* **created only to be dropped**: a new enrolment created suspended, or for a
  (course, person) PowerCampus never enrolled at any committed version;
* **dead letters**: each must name a poison record the harness produced (the
  same one twice is a redelivery after a kill -9 between the letter and the
  commit); every poison record must be dead-lettered.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState

STUDENT = 5
#: The roles the consumer gives (student, instructor, secondary instructor): a
#: person holds a course when an active enrolment carries one of them.
OURS = frozenset({STUDENT, EDITING_TEACHER, 4})
ENROL = "enrol_manual_enrol_users"
READ = "core_enrol_get_enrolled_users"

Holdings = dict[int, set[str]]
#: The explanations a welcome message other than for a new enrolment can have.
LATE = "a request held past the client timeout, applied after its client gave up"
ONTO_LATE = (
    "re-sent onto an enrolment that a request applied after its client gave up had "
    "created, after the consumer had read the course back"
)


def held_by_status(
    status: Mapping[str, Any], people: Mapping[int, str], courses: Iterable[int]
) -> Holdings:
    """Who Moodle holds per course, from the simulator's ``/_control/status``."""
    enrolments = status["enrolments"]
    held: Holdings = {}
    for course in courses:
        rows = enrolments.get(str(course), {})
        held[course] = {
            people[int(uid)]
            for uid, (state, roles) in rows.items()
            if int(uid) in people and state == 0 and OURS.intersection(roles)
        }
    return held


def held_by_state(
    state: MoodleState, people: Mapping[int, str], courses: Iterable[int]
) -> Holdings:
    """Who Moodle holds per course, from the site as the simulator saved it."""
    return {
        course: {
            people[view.userid]
            for view in state.enrolments(course)
            if view.userid in people
            and state.is_active(course, view.userid)
            and OURS.intersection(view.roleids)
        }
        for course in courses
    }


@dataclass
class Verdict:
    """One run's findings; ``failures()`` is empty when the run proved what it must."""

    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    welcomes_new: int = 0
    welcomes_explained: list[str] = field(default_factory=list)
    welcomes_unexplained: list[str] = field(default_factory=list)
    created_suspended: list[str] = field(default_factory=list)
    created_never_enrolled: list[str] = field(default_factory=list)
    created_then_dropped: int = 0
    dead_letters: int = 0
    dead_letters_redelivered: int = 0
    dead_letters_unjustified: list[str] = field(default_factory=list)
    poison_not_dead_lettered: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Every way the run fell short, one line each."""
        return [
            *(f"lost: {x}" for x in self.lost),
            *(f"wrong: {x}" for x in self.wrong),
            *(
                f"welcome not for a new enrolment, unexplained: {x}"
                for x in self.welcomes_unexplained
            ),
            *(f"enrolment created suspended: {x}" for x in self.created_suspended),
            *(
                f"enrolment created that PowerCampus never held: {x}"
                for x in self.created_never_enrolled
            ),
            *(
                f"dead letter without a poison record: {x}"
                for x in self.dead_letters_unjustified
            ),
            *(
                f"poison record not dead-lettered: {x}"
                for x in self.poison_not_dead_lettered
            ),
            *self.problems,
        ]


def compare(
    verdict: Verdict,
    truth: Holdings,
    state: MoodleState,
    journal: Sequence[Mapping[str, Any]],
    *,
    people: Mapping[int, str],
    names: Mapping[int, str],
    teacher: int,
) -> None:
    """Lost and wrong enrolments in the final site, each with the last write that
    touched it (from the journal); teachers untouched."""
    held = held_by_state(state, people, truth)
    userids = {person: userid for userid, person in people.items()}
    last = _last_writes(journal)

    def label(course: int, person: str) -> str:
        write = last.get((course, userids[person]), "never written")
        return f"{names[course]} {person} ({write})"

    for course in sorted(truth):
        verdict.lost += [label(course, p) for p in sorted(truth[course] - held[course])]
        verdict.wrong += [
            label(course, p) for p in sorted(held[course] - truth[course])
        ]
        for userid in sorted(people):
            if (
                OURS.intersection(state.roles_of(course, userid))
                and state.enrolment(course, userid) is None
            ):
                verdict.wrong.append(
                    f"{names[course]} {people[userid]}: role without enrolment"
                )
        if not state.is_active(
            course, teacher
        ) or EDITING_TEACHER not in state.roles_of(course, teacher):
            verdict.wrong.append(
                f"{names[course]}: the teacher's enrolment was changed"
            )


def _last_writes(journal: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int], str]:
    """Per (course, user): the last write Moodle applied, in words."""
    last: dict[tuple[int, int], str] = {}
    for line in sorted(journal, key=lambda x: x["applied"]):
        if line["function"] == READ:
            continue
        late = (
            f", applied {line['applied'] - line['arrived']:.1f} s after it arrived, "
            "its client gone"
            if line["client_gone"]
            else ""
        )
        last[(line["courseid"], line["userid"])] = (
            f"last write {line['function']}{late}"
        )
    return last


def judge_welcomes(
    verdict: Verdict,
    journal: Sequence[Mapping[str, Any]],
    *,
    people: Mapping[int, str],
    names: Mapping[int, str],
) -> None:
    """Classify every welcome message the journal shows (see the module docstring)."""
    previous: dict[tuple[int, int], Mapping[str, Any]] = {}
    reads: dict[int, list[float]] = defaultdict(list)
    for line in sorted(journal, key=lambda x: x["applied"]):
        if line["function"] == READ:
            reads[line["courseid"]].append(line["applied"])
            continue
        if line["function"] != ENROL:
            continue
        pair = (line["courseid"], line["userid"])
        label = f"{names.get(pair[0], pair[0])} {people.get(pair[1], pair[1])}"
        before = previous.get(pair)
        previous[pair] = line
        if not line["welcome"]:
            continue
        if not line["existed"]:
            verdict.welcomes_new += 1
        elif line["client_gone"]:
            held = line["applied"] - line["arrived"]
            verdict.welcomes_explained.append(f"{label} (held {held:.1f} s): {LATE}")
        elif (
            before is not None
            and before["client_gone"]
            and _read_between(reads[pair[0]], before["arrived"], line["arrived"])
        ):
            verdict.welcomes_explained.append(f"{label}: {ONTO_LATE}")
        else:
            verdict.welcomes_unexplained.append(
                f"{label}: re-enrolled (status before {line['status_before']}, roles "
                f"{line['roles_before']}, call {line['call']})"
            )


def _read_between(reads: Sequence[float], start: float, end: float) -> bool:
    return any(start < moment < end for moment in reads)


def judge_creations(
    verdict: Verdict,
    journal: Sequence[Mapping[str, Any]],
    ever_enrolled: Holdings,
    final: Holdings,
    *,
    people: Mapping[int, str],
    names: Mapping[int, str],
) -> None:
    """New enrolments: never suspended, never for a pair PowerCampus never held."""
    for line in journal:
        if line["function"] != ENROL or line["existed"]:
            continue
        course, person = (
            line["courseid"],
            people.get(line["userid"], str(line["userid"])),
        )
        label = f"{names.get(course, course)} {person}"
        if line["suspend"]:
            verdict.created_suspended.append(label)
        if person not in ever_enrolled.get(course, set()):
            verdict.created_never_enrolled.append(label)
        elif person not in final.get(course, set()):
            verdict.created_then_dropped += 1


def judge_dead_letters(
    verdict: Verdict,
    letters: Sequence[Mapping[str, Any]],
    poison: Sequence[tuple[int, int]],
    topic: str,
) -> None:
    """Every dead letter names a poison record; every poison record has one."""
    seen: Counter[tuple[int, int]] = Counter()
    for letter in letters:
        where = (letter["source_partition"], letter["source_offset"])
        if letter["source_topic"] != topic or where not in poison:
            verdict.dead_letters_unjustified.append(
                f"{letter['error_type']} from {letter['source_topic']}"
                f"[{where[0]}]@{where[1]}: {letter['reason'][:120]}"
            )
            continue
        seen[where] += 1
    verdict.dead_letters = len(letters)
    verdict.dead_letters_redelivered = sum(n - 1 for n in seen.values())
    verdict.poison_not_dead_lettered = [
        f"{topic}[{p}]@{o}" for p, o in poison if (p, o) not in seen
    ]
