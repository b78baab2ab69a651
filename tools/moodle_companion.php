<?php
// Lab-site set-up for enrolstream's companion plugin (moodle/local_enrolstream): a CLI admin
// step, run on the Moodle server after the plugin is installed. Idempotent.
//
//   php tools/moodle_companion.php add|remove|status [SERVICE [ROLE]]
//
// add:    puts local_enrolstream_set_enrolment_status in the external service SERVICE
//         (shortname, default "enrolstream") and allows enrol/manual:manage to the
//         system role ROLE (shortname, default "enrolstreamws": the harness's token role)
// remove: takes the function out of SERVICE again (the capability stays)
// status: prints whether the plugin is installed and the function is in SERVICE
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

const FUNCTION_NAME = 'local_enrolstream_set_enrolment_status';
const CAPABILITY = 'enrol/manual:manage';

[$verb, $serviceshortname, $roleshortname] = array_pad(array_slice($argv, 1), 3, null);
$serviceshortname = $serviceshortname ?? 'enrolstream';
$roleshortname = $roleshortname ?? 'enrolstreamws';
if (!in_array($verb, ['add', 'remove', 'status'], true)) {
    cli_error('usage: php moodle_companion.php add|remove|status [SERVICE [ROLE]]');
}

\core\session\manager::set_user(get_admin());
$installed = $DB->record_exists('external_functions', ['name' => FUNCTION_NAME]);
$service = $DB->get_record('external_services', ['shortname' => $serviceshortname], '*', MUST_EXIST);
$where = ['externalserviceid' => $service->id, 'functionname' => FUNCTION_NAME];

if ($verb === 'add') {
    if (!$installed) {
        cli_error('local_enrolstream is not installed: copy it to public/local/enrolstream and run admin/cli/upgrade.php');
    }
    if (!$DB->record_exists('external_services_functions', $where)) {
        $DB->insert_record('external_services_functions', (object) $where);
    }
    $role = $DB->get_record('role', ['shortname' => $roleshortname], '*', MUST_EXIST);
    // No cache to purge: the web-service layer reads a service's functions from the
    // database on every call, and assign_capability() resets the role's cache.
    assign_capability(CAPABILITY, CAP_ALLOW, $role->id, context_system::instance()->id, true);
} else if ($verb === 'remove') {
    $DB->delete_records('external_services_functions', $where);
}
echo json_encode([
    'installed' => $installed,
    'service' => $serviceshortname,
    'in_service' => $DB->record_exists('external_services_functions', $where),
]) . "\n";
