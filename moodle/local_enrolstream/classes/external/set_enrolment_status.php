<?php
// This file is part of Moodle - http://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <http://www.gnu.org/licenses/>.

namespace local_enrolstream\external;

use context_course;
use core_external\external_api;
use core_external\external_function_parameters;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;
use core_user;
use invalid_parameter_exception;
use moodle_exception;

/**
 * Suspend or reactivate existing manual enrolments, as the enrolment-edit form does.
 *
 * enrol_manual_enrol_users changes a status only by enrolling again, and
 * enrol_plugin::enrol_user() dispatches the after_user_enrolled hook on every call,
 * so the course welcome message goes out for a suspension or a reactivation too.
 * This function calls enrol_plugin::update_user_enrol() instead (what the
 * participants page's "Edit enrolment" form calls): it dispatches no enrolment
 * hook and sends no message. It never creates an enrolment and never touches roles.
 *
 * Checks per row, in this order (the first failing row rolls back the whole
 * request, as in the core enrol functions): the course context (a missing course
 * is invalidparameter "Context does not exist"), the capability
 * enrol/manual:manage, the user (invaliduser, also for a deleted user), the
 * course's manual instance (wsnoinstance, enabled or not), and the user's
 * enrolment in it (notenrolled).
 *
 * @package    local_enrolstream
 * @copyright  2026 enrolstream contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class set_enrolment_status extends external_api {
    /**
     * Describes the parameters: a list of (course, user, suspend) rows.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'enrolments' => new external_multiple_structure(
                new external_single_structure([
                    'courseid' => new external_value(PARAM_INT, 'The course of the manual enrolment'),
                    'userid' => new external_value(PARAM_INT, 'The enrolled user'),
                    'suspend' => new external_value(PARAM_INT, '1 to suspend the enrolment, 0 to make it active'),
                ])
            ),
        ]);
    }

    /**
     * Set the status of each row's manual enrolment; all rows or none.
     *
     * A row already in the wanted status is left as it is (update_user_enrol()
     * changes nothing and triggers no event then).
     *
     * @param array $enrolments rows of courseid, userid and suspend (0 or 1)
     */
    public static function execute(array $enrolments): void {
        global $CFG, $DB;
        require_once($CFG->libdir . '/enrollib.php');

        $params = self::validate_parameters(self::execute_parameters(), ['enrolments' => $enrolments]);
        foreach ($params['enrolments'] as $row) {
            if ($row['suspend'] !== 0 && $row['suspend'] !== 1) {
                throw new invalid_parameter_exception("suspend must be 0 or 1, not {$row['suspend']}");
            }
        }

        $transaction = $DB->start_delegated_transaction();
        $plugin = enrol_get_plugin('manual');
        if (empty($plugin)) {
            throw new moodle_exception('manualpluginnotinstalled', 'enrol_manual');
        }
        foreach ($params['enrolments'] as $row) {
            $context = context_course::instance($row['courseid'], IGNORE_MISSING);
            self::validate_context($context);
            require_capability('enrol/manual:manage', $context);
            // Not MUST_EXIST: its invalidrecordunknown is what a site without this plugin
            // answers for the unknown function, so a client can tell the two apart.
            $user = core_user::get_user($row['userid']);
            if (!$user || $user->deleted) {
                throw new moodle_exception('invaliduser', 'error');
            }

            $where = ['courseid' => $row['courseid'], 'enrol' => 'manual'];
            $instance = $DB->get_record('enrol', $where, '*', IGNORE_MULTIPLE);
            if (!$instance) {
                throw new moodle_exception('wsnoinstance', 'enrol_manual', '', (object) ['courseid' => $row['courseid']]);
            }
            // update_user_enrol() silently ignores a user who is not enrolled; say so instead,
            // so that a caller never believes a status was set.
            if (!$DB->record_exists('user_enrolments', ['enrolid' => $instance->id, 'userid' => $user->id])) {
                $a = (object) ['userid' => $user->id, 'courseid' => $row['courseid']];
                throw new moodle_exception('notenrolled', 'local_enrolstream', '', $a);
            }
            $status = $row['suspend'] ? ENROL_USER_SUSPENDED : ENROL_USER_ACTIVE;
            $plugin->update_user_enrol($instance, $user->id, $status);
        }
        $transaction->allow_commit();
    }

    /**
     * The function returns nothing (JSON null).
     */
    public static function execute_returns(): void {
    }
}
