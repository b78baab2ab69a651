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
use core_external\external_warnings;
use invalid_parameter_exception;
use moodle_exception;

/**
 * The enrolled users of several courses in one call: what a roster reconcile needs, nothing more.
 *
 * core_enrol_get_enrolled_users answers one course per call and does not say who is suspended,
 * so a client needs two listings per course (everyone, then onlysuspended=1). This function
 * answers, per course and user, what those two listings together say:
 *
 * - who is listed: every user, not deleted, with at least one enrolment (any method, any
 *   status) in the course, as get_enrolled_sql() without options;
 * - active: true unless onlysuspended=1 would list them, i.e. unless NO enrolment of theirs in
 *   the course is active in an enabled instance and inside its time window (status active,
 *   instance enabled, timestart < now, timeend 0 or > now; "now" rounded to 100 s, as
 *   get_enrolled_join() rounds it);
 * - roleids: their role assignments in the course context (any component), as
 *   user_get_user_details() reads them (get_user_roles($context, $userid, false));
 * - groupids: their groups in the course (all groupings), as user_get_user_details();
 * - idnumber and username under user_get_user_details()'s rules: idnumber when it is an
 *   identity field of the site or the caller has moodle/user:viewalldetails in the course,
 *   username with moodle/user:viewalldetails; otherwise "".
 *
 * A course is read only if the caller could read it with core_enrol_get_enrolled_users and
 * onlysuspended=1: the course context validates, moodle/course:viewparticipants (or
 * moodle/course:enrolreview), moodle/course:enrolreview, moodle/user:viewdetails. In a course
 * in separate-groups mode moodle/site:accessallgroups is required too (where core would list
 * only the caller's groups, this function refuses rather than answer with part of a roster).
 * A course that does not exist (or the front page), or that the caller may not read, is a
 * warning (item "course", its id) and the other courses are answered.
 *
 * One set-based query for the enrolments of all courses of the call (plus one for their roles
 * and one for their groups), ordered by course then user id and paged with limitfrom and
 * limitnumber over that order: a caller asks again from limitfrom + limitnumber while a page
 * comes back full.
 *
 * @package    local_enrolstream
 * @copyright  2026 enrolstream contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_course_enrolments extends external_api {
    /** Largest page: bounds the memory of one answer. */
    const MAX_LIMIT = 10000;

    /**
     * Describes the parameters: course ids, and the page.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'courseids' => new external_multiple_structure(
                new external_value(PARAM_INT, 'A course id')
            ),
            'limitfrom' => new external_value(PARAM_INT, 'Rows to skip (course, then user id order)', VALUE_DEFAULT, 0),
            'limitnumber' => new external_value(PARAM_INT, 'Rows to return at most, 1..' . self::MAX_LIMIT .
                ' (0: ' . self::MAX_LIMIT . ')', VALUE_DEFAULT, 0),
        ]);
    }

    /**
     * The enrolled users of the readable courses among $courseids, one page.
     *
     * @param int[] $courseids the courses
     * @param int $limitfrom rows to skip
     * @param int $limitnumber rows to return at most
     * @return array enrolments and warnings
     */
    public static function execute(array $courseids, int $limitfrom = 0, int $limitnumber = 0): array {
        global $CFG, $DB;
        require_once($CFG->dirroot . '/course/lib.php');
        require_once($CFG->libdir . '/enrollib.php');
        require_once($CFG->libdir . '/grouplib.php');

        $params = self::validate_parameters(self::execute_parameters(),
            ['courseids' => $courseids, 'limitfrom' => $limitfrom, 'limitnumber' => $limitnumber]);
        $limitfrom = $params['limitfrom'];
        $limitnumber = $params['limitnumber'] ?: self::MAX_LIMIT;
        if ($limitfrom < 0 || $limitnumber < 0 || $limitnumber > self::MAX_LIMIT) {
            throw new invalid_parameter_exception('limitfrom must be >= 0 and limitnumber 0..' . self::MAX_LIMIT);
        }

        $warnings = [];
        $readable = [];   // Course id => [show idnumber, show username, can view full names].
        $ids = array_values(array_unique($params['courseids']));
        $known = $ids ? $DB->get_records_list('course', 'id', $ids, '', 'id, groupmode') : [];
        foreach ($ids as $courseid) {
            if (!isset($known[$courseid]) || $courseid == SITEID) {
                $warnings[] = self::warning($courseid, 'invalidcourseid', get_string('invalidcourseid', 'error'));
                continue;
            }
            $context = context_course::instance($courseid);
            try {
                self::validate_context($context);
            } catch (\Exception $e) {
                $warnings[] = self::warning($courseid, 'errorcoursecontextnotvalid', get_string(
                    'errorcoursecontextnotvalid', 'webservice', (object) ['message' => $e->getMessage(), 'courseid' => $courseid]));
                continue;
            }
            try {
                course_require_view_participants($context);
                require_capability('moodle/course:enrolreview', $context);
                require_capability('moodle/user:viewdetails', $context);
                if ($known[$courseid]->groupmode == SEPARATEGROUPS) {
                    require_capability('moodle/site:accessallgroups', $context);
                }
            } catch (\core\exception\required_capability_exception $e) {
                $warnings[] = self::warning($courseid, $e->errorcode, $e->getMessage());
                continue;
            }
            $viewall = has_capability('moodle/user:viewalldetails', $context);
            $identity = \core_user\fields::get_identity_fields($context, false);
            $readable[$courseid] = [
                $viewall || in_array('idnumber', $identity),
                $viewall,
                has_capability('moodle/site:viewfullnames', $context),
            ];
        }

        $enrolments = $readable ? self::page(array_keys($readable), $limitfrom, $limitnumber) : [];
        foreach ($enrolments as &$row) {
            [$showidnumber, $showusername, $viewfullnames] = $readable[$row['courseid']];
            $row['fullname'] = fullname($row['user'], $viewfullnames);
            $row['idnumber'] = $showidnumber ? (string) $row['user']->idnumber : '';
            $row['username'] = $showusername ? (string) $row['user']->username : '';
            unset($row['user']);
        }
        unset($row);
        return ['enrolments' => $enrolments, 'warnings' => $warnings];
    }

    /**
     * One page of (course, user) rows over $courseids, with their roles and groups.
     *
     * @param int[] $courseids readable courses
     * @param int $limitfrom rows to skip
     * @param int $limitnumber rows to return at most
     * @return array rows: courseid, userid, active, roleids, groupids, user (name fields, idnumber, username)
     */
    private static function page(array $courseids, int $limitfrom, int $limitnumber): array {
        global $DB;
        [$insql, $params] = $DB->get_in_or_equal($courseids, SQL_PARAMS_NAMED, 'c');
        $now = round(time(), -2);   // As get_enrolled_join(): the same "now" as onlysuspended.
        $params += ['active' => ENROL_USER_ACTIVE, 'enabled' => ENROL_INSTANCE_ENABLED, 'now1' => $now, 'now2' => $now];
        $names = implode(', ', array_map(fn($f) => "u.$f", \core_user\fields::get_name_fields()));
        $sql = "SELECT a.courseid, a.userid, a.active, u.idnumber, u.username, $names
                  FROM (SELECT e.courseid, ue.userid,
                               MAX(CASE WHEN ue.status = :active AND e.status = :enabled AND ue.timestart < :now1
                                         AND (ue.timeend = 0 OR ue.timeend > :now2) THEN 1 ELSE 0 END) AS active
                          FROM {user_enrolments} ue
                          JOIN {enrol} e ON e.id = ue.enrolid
                         WHERE e.courseid $insql
                      GROUP BY e.courseid, ue.userid) a
                  JOIN {user} u ON u.id = a.userid AND u.deleted = 0
              ORDER BY a.courseid, a.userid";
        $rows = [];
        $recordset = $DB->get_recordset_sql($sql, $params, $limitfrom, $limitnumber);
        foreach ($recordset as $record) {
            $key = $record->courseid . ':' . $record->userid;
            $user = (object) ['id' => (int) $record->userid, 'idnumber' => $record->idnumber, 'username' => $record->username];
            foreach (\core_user\fields::get_name_fields() as $field) {
                $user->$field = $record->$field;
            }
            $rows[$key] = ['courseid' => (int) $record->courseid, 'userid' => (int) $record->userid,
                'active' => (bool) $record->active, 'roleids' => [], 'groupids' => [], 'user' => $user];
        }
        $recordset->close();
        if (!$rows) {
            return [];
        }
        $pagecourses = array_values(array_unique(array_column($rows, 'courseid')));
        [$insql, $params] = $DB->get_in_or_equal($pagecourses, SQL_PARAMS_NAMED, 'p');
        $roles = $DB->get_recordset_sql(
            "SELECT ra.id, ctx.instanceid AS courseid, ra.userid, ra.roleid
               FROM {role_assignments} ra
               JOIN {context} ctx ON ctx.id = ra.contextid AND ctx.contextlevel = :level
              WHERE ctx.instanceid $insql
           ORDER BY ra.roleid", $params + ['level' => CONTEXT_COURSE]);
        foreach ($roles as $role) {
            $key = $role->courseid . ':' . $role->userid;
            if (isset($rows[$key]) && !in_array((int) $role->roleid, $rows[$key]['roleids'], true)) {
                $rows[$key]['roleids'][] = (int) $role->roleid;
            }
        }
        $roles->close();
        $members = $DB->get_recordset_sql(
            "SELECT gm.id, g.courseid, gm.userid, gm.groupid
               FROM {groups_members} gm
               JOIN {groups} g ON g.id = gm.groupid
              WHERE g.courseid $insql
           ORDER BY gm.groupid", $params);
        foreach ($members as $member) {
            $key = $member->courseid . ':' . $member->userid;
            if (isset($rows[$key]) && !in_array((int) $member->groupid, $rows[$key]['groupids'], true)) {
                $rows[$key]['groupids'][] = (int) $member->groupid;
            }
        }
        $members->close();
        return array_values($rows);
    }

    /**
     * A warning about one course.
     *
     * @param int $courseid the course
     * @param string $code the warning code
     * @param string $message what it means
     * @return array
     */
    private static function warning(int $courseid, string $code, string $message): array {
        return ['item' => 'course', 'itemid' => $courseid, 'warningcode' => $code, 'message' => $message];
    }

    /**
     * Describes the answer.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'enrolments' => new external_multiple_structure(
                new external_single_structure([
                    'courseid' => new external_value(PARAM_INT, 'The course'),
                    'userid' => new external_value(PARAM_INT, 'The enrolled user'),
                    'idnumber' => new external_value(PARAM_RAW, 'The user\'s idnumber ("" when empty or not visible)'),
                    'username' => new external_value(PARAM_RAW, 'The user\'s username ("" when not visible)'),
                    'fullname' => new external_value(PARAM_NOTAGS, 'The user\'s full name'),
                    'active' => new external_value(PARAM_BOOL,
                        'False when core_enrol_get_enrolled_users with onlysuspended=1 lists the user'),
                    'roleids' => new external_multiple_structure(
                        new external_value(PARAM_INT, 'A role assigned in the course context')
                    ),
                    'groupids' => new external_multiple_structure(
                        new external_value(PARAM_INT, 'A group of the course the user is a member of')
                    ),
                ])
            ),
            'warnings' => new external_warnings(),
        ]);
    }
}
