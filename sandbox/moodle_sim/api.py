"""What a simulated web-service function is, and what it is called with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.moodle_sim.external import Description, Single
from sandbox.moodle_sim.state import MoodleState, Token


@dataclass(frozen=True)
class CallContext:
    """One call: the site, the token's record, the site's wwwroot and its functions."""

    state: MoodleState
    token: Token
    wwwroot: str
    #: Every function the site knows, by name (``registry.all_functions``).
    functions: Mapping[str, WsFunction] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        """Whether the token belongs to the site administrator."""
        return self.token.userid == 2  # noqa: PLR2004 - admin is user 2 on every site

    def user_picture(self, size: str) -> str:
        """The default user picture URL (``f1`` large, ``f2`` small)."""
        themerev = self.state.site.themerev
        return f"{self.wwwroot}/theme/image.php/boost/core/{themerev}/u/{size}"


Handler = Callable[[CallContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class WsFunction:
    """A function: parameter and return descriptions, handler, row count for latency.

    ``plugin`` names the add-on plugin that provides it (None: Moodle itself); on a
    site without that plugin the function does not exist.
    """

    name: str
    parameters: Single
    returns: Description | None
    handler: Handler
    version: str = "2025100600.02"
    rows_param: str | None = None
    plugin: str | None = None

    def exists_on(self, plugins: tuple[str, ...], plugin_version: str = "") -> bool:
        """Whether a site with ``plugins`` installed (at ``plugin_version``) has it.

        A plugin's function exists from the plugin version that brought it
        (``version``) on; ``plugin_version`` "" is the newest.
        """
        if self.plugin is None:
            return True
        return self.plugin in plugins and (
            not plugin_version or self.version <= plugin_version
        )

    def rows(self, params: dict[str, Any]) -> int:
        """How many items the (validated) call carries, for the latency model."""
        if self.rows_param is None:
            return 0
        items = params.get(self.rows_param)
        return len(items) if isinstance(items, list) else 0
