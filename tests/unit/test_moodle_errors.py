"""Classification of Moodle's error bodies, checked against the recorded golden answers."""

from __future__ import annotations

import json

import pytest

from connectors.moodle.errors import (
    MoodleAuthError,
    MoodleBadResponse,
    MoodleCannotAssignRole,
    MoodleCodingError,
    MoodleError,
    MoodleFunctionMissing,
    MoodleGuestNotAllowed,
    MoodleInvalidParameter,
    MoodleNoManualInstance,
    MoodleNotFound,
    MoodleRejected,
    MoodleTaken,
    MoodleUnavailable,
    classify_moodle_error,
    is_moodle_error_body,
)
from consumers.errors import ConsumerError, InvalidEvent, MappingError
from tests.conftest import GOLDEN_DIR

GOLDEN = GOLDEN_DIR

EXPECTED: dict[str, type[MoodleError]] = {
    "create_courses_duplicate_shortname": MoodleTaken,
    "create_users_batch_one_bad": MoodleInvalidParameter,
    "create_users_duplicate_email": MoodleInvalidParameter,
    "create_users_duplicate_username": MoodleInvalidParameter,
    "create_users_uppercase_username": MoodleInvalidParameter,
    "enrol_batch_bad_role_last": MoodleCannotAssignRole,
    "enrol_batch_exceeds_max_input_vars_mid_item": MoodleInvalidParameter,
    "enrol_batch_exceeds_max_input_vars_token_last": MoodleAuthError,
    "enrol_batch_one_bad_item": MoodleNotFound,
    "enrol_course_manual_disabled": MoodleNoManualInstance,
    "enrol_course_no_manual_instance": MoodleNoManualInstance,
    "enrol_guest_user": MoodleGuestNotAllowed,
    "enrol_nonexistent_course": MoodleInvalidParameter,
    "enrol_nonexistent_user": MoodleNotFound,
    "enrol_role_coursecreator_admin": MoodleCannotAssignRole,
    "enrol_role_manager_not_assignable": MoodleCannotAssignRole,
    "enrol_role_nonexistent": MoodleCannotAssignRole,
    "enrol_role_zero": MoodleCannotAssignRole,
    "enrol_site_course": MoodleNoManualInstance,
    "error_function_not_in_service": MoodleAuthError,
    "error_function_unknown": MoodleNotFound,
    "error_invalid_token": MoodleAuthError,
    "error_missing_courseid": MoodleInvalidParameter,
    "error_missing_roleid": MoodleInvalidParameter,
    "error_missing_token": MoodleAuthError,
    "error_missing_wsfunction": MoodleInvalidParameter,
    "error_no_enrolments_param": MoodleInvalidParameter,
    "error_nonexistent_user_debug_on": MoodleNotFound,
    "error_suspend_not_int": MoodleInvalidParameter,
    "error_unexpected_key": MoodleInvalidParameter,
    "error_userid_float_string": MoodleInvalidParameter,
    "error_userid_not_int": MoodleInvalidParameter,
    "error_userid_not_int_debug_on": MoodleInvalidParameter,
    "get_courses_by_field_bad_field": MoodleInvalidParameter,
    "get_enrolled_users_bad_option": MoodleCodingError,
    "get_enrolled_users_nonexistent_course": MoodleNotFound,
    "get_users_by_field_bad_field": MoodleCodingError,
    "get_users_by_field_username": MoodleInvalidParameter,
    "unenrol_batch_one_bad_item": MoodleNotFound,
    "unenrol_course_no_manual_instance": MoodleNoManualInstance,
    "unenrol_nonexistent_course": MoodleNotFound,
    "unenrol_nonexistent_user": MoodleNotFound,
    # Sequence 2 (core_role_*): every refusal is invalidparameter, a missing user
    # is a coding_exception (a row's fault there: MoodleNotFound); only debuginfo
    # tells a forbidden role from a missing course.
    "assign_roles_bad_contextlevel": MoodleInvalidParameter,
    "assign_roles_batch_one_bad": MoodleNotFound,
    "assign_roles_forbidden_manager": MoodleInvalidParameter,
    "assign_roles_forbidden_manager_debug_on": MoodleInvalidParameter,
    "assign_roles_no_context": MoodleInvalidParameter,
    "assign_roles_nonexistent_contextid": MoodleInvalidParameter,
    "assign_roles_nonexistent_course": MoodleInvalidParameter,
    "assign_roles_nonexistent_course_debug_on": MoodleInvalidParameter,
    "assign_roles_nonexistent_role": MoodleInvalidParameter,
    "assign_roles_nonexistent_user": MoodleNotFound,
    "assign_roles_nonexistent_user_debug_on": MoodleNotFound,
    "unassign_roles_batch_one_bad": MoodleInvalidParameter,
    "unassign_roles_forbidden_manager": MoodleInvalidParameter,
    "unassign_roles_nonexistent_course": MoodleInvalidParameter,
    # Sequence 3 (the companion plugin): "no such function" is told from a row's
    # fault because the function never answers invalidrecordunknown itself;
    # notenrolled is a row's fault with no subclass of its own.
    "companion_not_installed": MoodleFunctionMissing,
    "companion_not_installed_debug_on": MoodleFunctionMissing,
    "companion_not_in_service": MoodleAuthError,
    "companion_not_enrolled_suspend": MoodleRejected,
    "companion_not_enrolled_reactivate": MoodleRejected,
    "companion_not_enrolled_debug_on": MoodleRejected,
    "companion_batch_one_bad": MoodleRejected,
    "companion_no_manual_instance": MoodleNoManualInstance,
    "companion_nonexistent_user": MoodleNotFound,
    "companion_nonexistent_user_debug_on": MoodleNotFound,
    "companion_deleted_user": MoodleNotFound,
    "companion_nonexistent_course": MoodleInvalidParameter,
    "companion_nonexistent_course_debug_on": MoodleInvalidParameter,
    "companion_suspend_not_0_or_1": MoodleInvalidParameter,
    "companion_suspend_not_0_or_1_debug_on": MoodleInvalidParameter,
    "companion_missing_suspend": MoodleInvalidParameter,
    # Sequence 4: every refused account is a bare invalidparameter (a row's fault).
    **{
        f"people_create_{case}": MoodleInvalidParameter
        for case in (
            "manual_no_password",
            "nologin_no_password",
            "saml2_not_installed",
            "oidc_not_installed",
            "username_taken",
            "email_taken",
            "email_taken_other_case",
            "email_invalid",
            "manual_no_password_debug_on",
            "saml2_not_installed_debug_on",
            "username_taken_debug_on",
            "email_taken_other_case_debug_on",
        )
    },
    # Sequence 5: course shells and section groups.
    "courses_create_category_duplicate_idnumber": MoodleTaken,
    "courses_create_duplicate_shortname": MoodleTaken,
    "courses_create_duplicate_idnumber": MoodleTaken,
    "courses_create_batch_one_duplicate": MoodleTaken,
    "courses_create_missing_category": MoodleNotFound,
    "groups_create_duplicate_idnumber": MoodleTaken,
    "groups_create_batch_one_bad": MoodleTaken,
    "groups_create_after_rollback": MoodleTaken,
    "groups_create_duplicate_name": MoodleInvalidParameter,
    "groups_create_duplicate_name_debug_on": MoodleInvalidParameter,
    "groups_create_without_description": MoodleInvalidParameter,
    "groups_create_without_description_debug_on": MoodleInvalidParameter,
    "groups_list_unknown_course": MoodleNotFound,
    "groups_add_member_not_enrolled": MoodleInvalidParameter,
    "groups_add_member_not_enrolled_debug_on": MoodleInvalidParameter,
    "groups_add_members_batch_one_bad": MoodleInvalidParameter,
    "groups_add_member_unknown_group": MoodleNotFound,
    "groups_add_member_unknown_user": MoodleNotFound,
    "groups_delete_member_unknown_group": MoodleNotFound,
    "groups_delete_members_batch_one_bad": MoodleNotFound,
    # Sequence 6: the companion plugin's bulk roster read.
    "bulkroster_not_installed": MoodleFunctionMissing,
    "bulkroster_not_in_service": MoodleAuthError,
    "bulkroster_bad_limit": MoodleInvalidParameter,
    "bulkroster_no_courses": MoodleInvalidParameter,
    "bulkroster_core_onlysuspended_forbidden": MoodleRejected,
}


def golden_body(case: str) -> object:
    """The recorded response body of one golden case."""
    recorded = json.loads((GOLDEN / f"{case}.json").read_text())
    return recorded["response_body"]


def golden_function(case: str) -> str:
    """The web-service function a golden case called."""
    recorded = json.loads((GOLDEN / f"{case}.json").read_text())
    return str(recorded["function"])


def golden_error_cases() -> list[str]:
    """Every golden case whose body is a JSON error object."""
    return sorted(
        path.stem
        for path in GOLDEN.glob("*.json")
        if not path.stem.startswith("latency")
        and is_moodle_error_body(golden_body(path.stem))
    )


class TestGoldenClassification:
    """Every recorded Moodle 5.1 error body maps to the expected typed error."""

    def test_table_covers_every_golden_error(self) -> None:
        """The table names exactly the golden cases that are error bodies."""
        assert set(EXPECTED) == set(golden_error_cases())

    @pytest.mark.parametrize(("case", "expected"), sorted(EXPECTED.items()))
    def test_classifies(self, case: str, expected: type[MoodleError]) -> None:
        """The golden body yields exactly this type, with the body's fields kept."""
        body = golden_body(case)
        assert isinstance(body, dict)
        error = classify_moodle_error(body, function=golden_function(case))
        assert type(error) is expected
        if isinstance(error, MoodleRejected):
            assert (error.errorcode, error.exception, error.message) == (
                body["errorcode"],
                body["exception"],
                body["message"],
            )
            assert error.debuginfo == body.get("debuginfo")

    def test_debug_setting_does_not_change_not_found(self) -> None:
        """invalidrecordunknown (debug off) and invaliduser (debug on) classify alike."""
        off = golden_body("enrol_nonexistent_user")
        on = golden_body("error_nonexistent_user_debug_on")
        assert isinstance(off, dict)
        assert isinstance(on, dict)
        assert off["errorcode"] != on["errorcode"]
        assert type(classify_moodle_error(off)) is type(classify_moodle_error(on))

    @pytest.mark.parametrize(
        "case", ["enrol_success", "get_users_by_field_idnumber_not_found", "site_info"]
    )
    def test_success_bodies_are_not_errors(self, case: str) -> None:
        """null, [] and a site-info object are not error bodies."""
        assert not is_moodle_error_body(golden_body(case))


class TestClassificationRules:
    """Rules beyond the golden set: unknown codes, maintenance, namespaced classes."""

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"exception": "x", "errorcode": "wscannotenrol"}, MoodleRejected),
            (
                {"exception": "moodle_exception", "errorcode": "sitemaintenance"},
                MoodleUnavailable,
            ),
            (
                {"exception": "moodle_exception", "errorcode": "servicenotavailable"},
                MoodleAuthError,
            ),
            (
                {"exception": "a\\b\\webservice_access_exception", "errorcode": "x"},
                MoodleAuthError,
            ),
            (
                {
                    "exception": "dml_missing_record_exception",
                    "errorcode": "invalidrecord",
                },
                MoodleNotFound,
            ),
        ],
    )
    def test_classifies(
        self, body: dict[str, object], expected: type[MoodleError]
    ) -> None:
        """Each body yields exactly this type."""
        assert type(classify_moodle_error(body)) is expected

    @pytest.mark.parametrize(
        ("function", "expected"),
        [
            ("local_enrolstream_set_enrolment_status", MoodleFunctionMissing),
            ("enrol_manual_enrol_users", MoodleNotFound),
            ("local_enrolstream_set_enrolment_statsu", MoodleNotFound),
        ],
    )
    def test_missing_function_only_where_unambiguous(
        self, function: str, expected: type[MoodleError]
    ) -> None:
        """invalidrecordunknown means "no such function" only from the companion's."""
        body = golden_body("companion_not_installed")
        assert isinstance(body, dict)
        error = classify_moodle_error(body, function=function)
        assert type(error) is expected

    def test_missing_function_names_it(self) -> None:
        """The message says which function is missing and why, and it stops the consumer."""
        function = "local_enrolstream_set_enrolment_status"
        body = golden_body("companion_not_installed")
        assert isinstance(body, dict)
        error = classify_moodle_error(body, function=function)
        assert function in str(error)
        assert "plugin installed" in str(error)
        assert not error.retriable


class TestRetriable:
    """Whether a retry is safe is a property of the type."""

    @pytest.mark.parametrize(
        ("error", "retriable"),
        [
            (MoodleUnavailable("timeout", retry_after_s=2.0), True),
            (MoodleAuthError("invalidtoken", "Invalid token"), False),
            (MoodleBadResponse("html", status=200), False),
            (MoodleNotFound("invalidrecordunknown", "Can't find"), False),
            (MoodleCodingError("codingerror", "bug"), False),
            (MappingError("m.json", "BSC5102", "no such course"), False),
            (InvalidEvent("no registrations"), False),
        ],
    )
    def test_retriable(self, error: ConsumerError, retriable: bool) -> None:
        """Only the unavailable kinds are retriable."""
        assert error.retriable is retriable

    @pytest.mark.parametrize(
        ("error", "row_level"),
        [
            (MoodleNotFound("invaliduser", "Invalid user"), True),
            (MoodleCannotAssignRole("wsusercannotassign", "no"), True),
            (MoodleRejected("somethingnew", "?"), True),
            (MoodleCodingError("codingerror", "bug"), False),
        ],
    )
    def test_row_level(self, error: MoodleRejected, row_level: bool) -> None:
        """Only rejections one row can cause are bisected."""
        assert error.row_level is row_level

    def test_mapping_error_message_names_file_key_problem(self) -> None:
        """The message of a MappingError carries the file, the key and the problem."""
        error = MappingError("mapping.json", "BSC5102-01", "unknown course")
        assert str(error) == "mapping.json: BSC5102-01: unknown course"
        assert (error.file, error.key, error.problem) == (
            "mapping.json",
            "BSC5102-01",
            "unknown course",
        )

    def test_unavailable_carries_retry_after(self) -> None:
        """retry_after_s is kept and shown."""
        error = MoodleUnavailable("HTTP 503", retry_after_s=7.0)
        assert error.retry_after_s == 7.0
        assert "7" in str(error)
