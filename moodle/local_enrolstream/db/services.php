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

/**
 * Web-service functions of local_enrolstream.
 *
 * The functions are not added to any service here: a site administrator adds it
 * to the service the enrolstream token uses (see README.md).
 *
 * @package    local_enrolstream
 * @copyright  2026 enrolstream contributors
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$functions = [
    'local_enrolstream_set_enrolment_status' => [
        'classname'    => 'local_enrolstream\external\set_enrolment_status',
        'description'  => 'Suspend or reactivate existing manual enrolments without re-enrolling '
            . '(no enrolment hook, so no course welcome message). Never creates an enrolment.',
        'type'         => 'write',
        'capabilities' => 'enrol/manual:manage',
    ],
    'local_enrolstream_get_course_enrolments' => [
        'classname'    => 'local_enrolstream\external\get_course_enrolments',
        'description'  => 'The enrolled users of several courses in one call, each with active or not (as '
            . 'core_enrol_get_enrolled_users with onlysuspended tells it), role ids and group ids. Read-only.',
        'type'         => 'read',
        'capabilities' => 'moodle/course:viewparticipants, moodle/course:enrolreview, moodle/user:viewdetails',
    ],
];
