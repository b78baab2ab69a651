"""IMS Enterprise 1.1 XML, as Banner's LMB sends it, read into ``lmb.messages`` values.

Parsed with defusedxml: a document that declares an entity (billion laughs) or
refers to an external one is refused before anything is expanded or fetched
(``HostileMessage``); one that is not well-formed is ``MalformedMessage``. A DTD
reference alone (``<!DOCTYPE enterprise SYSTEM "...">``) is allowed and never
fetched.

Read as the two Moodle plugins read it (enrol_lmb's ``lib.php`` and SHEBanG's
``locallib.php``): element and attribute names compare case-insensitively
(SHEBanG case-folds them), namespaces are ignored, and the objects are the
``person``, ``group`` and ``membership`` elements wherever they are (under an
``enterprise`` root or alone). An object that lacks what identifies it is listed
in ``problems`` and the others are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from lmb.errors import HostileMessage, MalformedMessage
from lmb.messages import (
    GroupKind,
    ImsGroup,
    ImsMember,
    ImsMessage,
    ImsObject,
    ImsPerson,
    RecStatus,
)

__all__ = ["parse_ims"]

_OBJECTS = frozenset({"person", "group", "membership"})
#: IMS: 1 add, 2 update, 3 delete; absent, or enrol_lmb's 0 ("unspecified"): add.
_RECSTATUS: dict[str, RecStatus] = {
    "": "add",
    "0": "add",
    "1": "add",
    "2": "update",
    "3": "delete",
}
_KINDS: dict[str, GroupKind] = {
    "term": "term",
    "coursesection": "section",
    "crosslistedsection": "crosslist",
}


class _Unreadable(Exception):
    """One object's problem, before its position is attached."""


def _name(element: Element) -> str:
    return (
        element.tag.rsplit("}", 1)[-1].casefold()
        if isinstance(element.tag, str)
        else ""
    )


def _child(element: Element | None, *path: str) -> Element | None:
    for step in path:
        if element is None:
            return None
        element = next((c for c in element if _name(c) == step), None)
    return element


def _children(element: Element, name: str) -> Iterator[Element]:
    return (child for child in element if _name(child) == name)


def _text(element: Element | None, *path: str) -> str | None:
    found = _child(element, *path)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _attribute(element: Element | None, name: str) -> str:
    if element is None:
        return ""
    return next(
        (v.strip() for k, v in element.attrib.items() if k.casefold() == name), ""
    )


def _recstatus(element: Element | None) -> RecStatus:
    value = _attribute(element, "recstatus")
    if value not in _RECSTATUS:
        raise _Unreadable(f"recstatus {value!r} is not 1, 2 or 3")
    return _RECSTATUS[value]


def _sourcedid(element: Element, what: str) -> str:
    sourcedid = _text(element, "sourcedid", "id")
    if sourcedid is None:
        raise _Unreadable(f"{what} has no sourcedid/id")
    return sourcedid


def _person(element: Element) -> ImsPerson:
    return ImsPerson(
        sourcedid=_sourcedid(element, "person"),
        recstatus=_recstatus(element),
        given=_text(element, "name", "n", "given"),
        family=_text(element, "name", "n", "family"),
        nickname=_text(element, "name", "nickname"),
        email=_text(element, "email"),
        userids=tuple(
            (_attribute(u, "useridtype"), (u.text or "").strip())
            for u in _children(element, "userid")
            if (u.text or "").strip()
        ),
    )


def _group(element: Element) -> ImsGroup:
    typevalue = _text(element, "grouptype", "typevalue") or ""
    related: dict[str, str] = {}
    for relationship in _children(element, "relationship"):
        label = (_text(relationship, "label") or "").casefold()
        target = _text(relationship, "sourcedid", "id")
        if label and target:
            related.setdefault(label, target)
    return ImsGroup(
        sourcedid=_sourcedid(element, "group"),
        kind=_KINDS.get(typevalue.casefold().replace(" ", ""), "other"),
        typevalue=typevalue,
        recstatus=_recstatus(element),
        short=_text(element, "description", "short"),
        long=_text(element, "description", "long"),
        full=_text(element, "description", "full"),
        term_id=related.get("term"),
        course_id=related.get("course"),
    )


def _member(group: str, element: Element) -> ImsMember:
    member = _sourcedid(element, "member")
    idtype = _text(element, "idtype")
    if idtype not in {"1", "2"}:
        raise _Unreadable(f"member {member}: idtype {idtype!r} is not 1 or 2")
    role = _child(element, "role")
    if role is None:
        raise _Unreadable(f"member {member}: no role")
    recstatus = _recstatus(role)
    status = _text(role, "status")
    if status not in {"0", "1"} and recstatus != "delete":
        raise _Unreadable(f"member {member}: role/status {status!r} is not 1 or 0")
    return ImsMember(
        group=group,
        member=member,
        kind="person" if idtype == "1" else "group",
        roletype=_attribute(role, "roletype").zfill(2),
        active=status == "1",
        recstatus=recstatus,
    )


def _objects(element: Element) -> Iterator[Element]:
    """The person, group and membership elements, not looking inside one."""
    for child in element:
        if _name(child) in _OBJECTS:
            yield child
        else:
            yield from _objects(child)


def _read(element: Element) -> list[ImsObject]:
    name = _name(element)
    if name == "person":
        return [_person(element)]
    if name == "group":
        return [_group(element)]
    group = _sourcedid(element, "membership")
    members = list(_children(element, "member"))
    if not members:
        raise _Unreadable(f"membership {group} has no member")
    return [_member(group, member) for member in members]


def parse_ims(body: bytes) -> ImsMessage:
    """The message's objects; ``HostileMessage`` or ``MalformedMessage`` if it has none."""
    try:
        root = SafeElementTree.fromstring(
            body, forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise HostileMessage(f"refused unparsed: {exc!r}") from exc
    except ParseError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from exc
    elements = [root] if _name(root) in _OBJECTS else list(_objects(root))
    if not elements:
        raise MalformedMessage(
            f"no person, group or membership element (root element {_name(root)!r})"
        )
    objects: list[ImsObject] = []
    problems: list[str] = []
    for number, element in enumerate(elements, start=1):
        try:
            objects.extend(_read(element))
        except _Unreadable as exc:
            problems.append(f"{_name(element)} #{number}: {exc}")
    return ImsMessage(objects=tuple(objects), problems=tuple(problems))
