"""``core_webservice_get_site_info``: the token owner, the release, the service's functions."""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Required, Single, Value
from sandbox.moodle_sim.site import SiteConfig

_OPT: Required = "optional"


def site_info(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """The token owner, the site's release and the service's function list."""
    del params
    state = ctx.state
    user = state.user(ctx.token.userid)
    assert user is not None  # noqa: S101 - tokens are issued to existing users
    registry = ctx.functions
    private_key = hashlib.sha256(f"{ctx.token.token}:{user.id}".encode()).hexdigest()[
        :32
    ]
    features = [
        ("usecomments", 1),
        ("usetags", 1),
        ("enablenotes", 1),
        ("messaging", 1),
        ("enableblogs", 1),
        ("enablecompletion", 1),
        ("enablebadges", 1),
        ("messagingallusers", 0),
        ("enablecustomreports", 1),
        ("enableglobalsearch", 0),
        ("mnet_dispatcher_mode", 0),
        ("enablecompetencies", 1),
    ]
    return {
        "sitename": state.site.sitename,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": f"{user.firstname} {user.lastname}",
        "lang": user.lang,
        "userid": user.id,
        "siteurl": ctx.wwwroot,
        "userpictureurl": ctx.user_picture("f1"),
        "functions": [
            {"name": name, "version": _version(registry[name], state.site)}
            for name in ctx.token.functions
            if name in registry
            and registry[name].exists_on(state.site.plugins, state.site.plugin_version)
        ],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": state.site.release,
        "version": state.site.version,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in features],
        "usercanmanageownfiles": True,
        "userquota": 104857600,
        "usermaxuploadfilesize": 67108864,
        "userhomepage": 1,
        "userprivateaccesskey": private_key,
        "siteid": 1,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": ctx.is_admin,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }


def _v(kind: str, required: Required = "optional") -> Value:
    return Value(kind, required)


_NAME_VALUE = Single({"name": _v("raw", "required"), "value": _v("raw", "required")})
_SITE_INFO = Single(
    {
        **{
            k: _v("raw", "required")
            for k in (
                "sitename",
                "username",
                "firstname",
                "lastname",
                "fullname",
                "lang",
            )
        },
        "userid": _v("int", "required"),
        "siteurl": _v("raw", "required"),
        "userpictureurl": _v("raw", "required"),
        "functions": Multiple(
            Single({"name": _v("raw", "required"), "version": _v("text", "required")})
        ),
        "downloadfiles": _v("int"),
        "uploadfiles": _v("int"),
        "release": _v("text"),
        "version": _v("text"),
        "mobilecssurl": _v("raw"),
        "advancedfeatures": Multiple(_NAME_VALUE, _OPT),
        "usercanmanageownfiles": _v("bool"),
        "userquota": _v("int"),
        "usermaxuploadfilesize": _v("int"),
        "userhomepage": _v("int"),
        "userprivateaccesskey": _v("raw"),
        "siteid": _v("int"),
        "sitecalendartype": _v("plugin"),
        "usercalendartype": _v("plugin"),
        "userissiteadmin": _v("bool"),
        "theme": _v("plugin"),
        "limitconcurrentlogins": _v("int"),
        "policyagreed": _v("int"),
    }
)


FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_webservice_get_site_info",
            Single(
                {
                    "serviceshortnames": Multiple(
                        _v("alphanumext", "required"), "default", []
                    )
                }
            ),
            _SITE_INFO,
            site_info,
        ),
    )
}


def _version(function: WsFunction, site: SiteConfig) -> str:
    """What site_info lists: the installed plugin's version for a plugin's function."""
    if function.plugin is not None and site.plugin_version:
        return site.plugin_version
    return function.version
