<?php
// Lab-site set-up for enrolstream's companion plugin (moodle/local_enrolstream): a CLI admin
// step, run on the Moodle server after the plugin is installed. Idempotent.
//
//   php tools/moodle_companion.php add|remove|status [SERVICE [ROLE]]
//
// add:    puts the plugin's functions (local_enrolstream_set_enrolment_status,
//         local_enrolstream_get_course_enrolments) in the external service SERVICE
//         (shortname, default "enrolstream") and allows enrol/manual:manage to the
//         system role ROLE (shortname, default "enrolstreamws": the harness's token role)
// remove: takes the functions out of SERVICE again (the capability stays)
// status: prints whether the plugin is installed and the functions are in SERVICE
// COMPANION_FUNCTIONS (comma-separated names) limits add/remove/status to those functions.
//
// MOODLE_DIR selects the site (default /opt/moodle). On a real site an administrator does
// the same through Site administration (see moodle/local_enrolstream/README.md).
// Not part of the plugin: a site that installs the plugin decides itself which service
// gets its function. Note that the harness's ws_setup.php keeps its service to exactly its
// own function list, so re-running the harness's setup.sh takes the function out again.

define('CLI_SCRIPT', true);
$moodledir = getenv('MOODLE_DIR') ?: '/opt/moodle';
require($moodledir . '/config.php');
require_once($CFG->libdir . '/clilib.php');
require_once($CFG->libdir . '/accesslib.php');

const FUNCTION_NAMES = ['local_enrolstream_set_enrolment_status', 'local_enrolstream_get_course_enrolments'];
const CAPABILITY = 'enrol/manual:manage';

[$verb, $serviceshortname, $roleshortname] = array_pad(array_slice($argv, 1), 3, null);
$serviceshortname = $serviceshortname ?? 'enrolstream';
$roleshortname = $roleshortname ?? 'enrolstreamws';
if (!in_array($verb, ['add', 'remove', 'status'], true)) {
    cli_error('usage: php moodle_companion.php add|remove|status [SERVICE [ROLE]]');
}

\core\session\manager::set_user(get_admin());
$names = getenv('COMPANION_FUNCTIONS') ? explode(',', getenv('COMPANION_FUNCTIONS')) : FUNCTION_NAMES;
$service = $DB->get_record('external_services', ['shortname' => $serviceshortname], '*', MUST_EXIST);
$status = [];
foreach ($names as $name) {
    $installed = $DB->record_exists('external_functions', ['name' => $name]);
    $where = ['externalserviceid' => $service->id, 'functionname' => $name];
    if ($verb === 'add') {
        if (!$installed) {
            cli_error("$name is not installed: copy local_enrolstream to public/local/enrolstream and run admin/cli/upgrade.php");
        }
        if (!$DB->record_exists('external_services_functions', $where)) {
            $DB->insert_record('external_services_functions', (object) $where);
        }
    } else if ($verb === 'remove') {
        $DB->delete_records('external_services_functions', $where);
    }
    $status[$name] = ['installed' => $installed, 'in_service' => $DB->record_exists('external_services_functions', $where)];
}
if ($verb === 'add') {
    $role = $DB->get_record('role', ['shortname' => $roleshortname], '*', MUST_EXIST);
    // No cache to purge: the web-service layer reads a service's functions from the
    // database on every call, and assign_capability() resets the role's cache.
    assign_capability(CAPABILITY, CAP_ALLOW, $role->id, context_system::instance()->id, true);
}
echo json_encode(['service' => $serviceshortname, 'functions' => $status]) . "\n";
