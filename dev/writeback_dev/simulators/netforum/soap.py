"""SOAP 1.1 envelopes as xWeb reads and writes them, built and parsed with lxml."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from . import errors as E
from .errors import XWebError
from .store import render_value

NS = "http://www.avectra.com/2005/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
CONTENT_TYPE = "text/xml; charset=utf-8"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)
_NSMAP = {"soap": SOAP_ENV, "xsi": XSI, "xsd": XSD}


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed request: the operation, its body element and the token header, if any."""

    operation: str
    body: etree._Element
    token: str | None

    def param(self, name: str) -> str | None:
        """A string parameter; ASP.NET binds only namespace-qualified elements, so an unqualified one
        is as absent as a missing one."""
        element = self.body.find(q(name))
        return None if element is None else (element.text or "")

    def node(self, name: str) -> etree._Element | None:
        return self.body.find(q(name))


def parse_request(payload: bytes, soap_action: str | None, operations: Iterable[str]) -> Call:
    """The envelope's operation must agree with SOAPAction when one is sent, as ASP.NET dispatches."""
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as error:
        raise XWebError(
            E.MALFORMED_REQUEST, f"Server was unable to read request. {error}", faultcode="soap:Client"
        ) from None
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise XWebError(
            E.MALFORMED_REQUEST,
            "SOAP 1.2 is not supported by this binding.",
            faultcode="soap:VersionMismatch",
        )
    body = root.find(f"{{{SOAP_ENV}}}Body") if root.tag == f"{{{SOAP_ENV}}}Envelope" else None
    element = next(iter(body), None) if body is not None else None
    if element is None:
        raise XWebError(
            E.MALFORMED_REQUEST,
            "Server was unable to read request: no SOAP 1.1 Body.",
            faultcode="soap:Client",
        )
    name = etree.QName(element).localname if etree.QName(element).namespace == NS else None
    action = (soap_action or "").strip().strip('"')
    if name not in operations or (action and action != NS + name):
        shown = action or etree.QName(element).text
        raise XWebError(
            E.UNKNOWN_OPERATION,
            f"Server did not recognize the value of HTTP Header SOAPAction: {shown}.",
            faultcode="soap:Client",
        )
    return Call(name, element, _token(root))


def _token(root: etree._Element) -> str | None:
    token = root.find(f"{{{SOAP_ENV}}}Header/{q('AuthorizationToken')}/{q('Token')}")
    return None if token is None else (token.text or "").strip()


def response(operation: str, result: str | etree._Element | None, token: str | None) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_NSMAP)
    if token is not None:
        header = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Header")
        auth = etree.SubElement(header, q("AuthorizationToken"), nsmap={None: NS})
        etree.SubElement(auth, q("Token")).text = token
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, q(f"{operation}Response"), nsmap={None: NS})
    holder = etree.SubElement(wrapper, q(f"{operation}Result"))
    if isinstance(result, str):
        holder.text = result
    elif result is not None:
        holder.append(result)
    return _serialize(envelope)


def fault(error: XWebError, operation: str | None) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_NSMAP)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    element = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(element, "faultcode").text = error.faultcode
    etree.SubElement(element, "faultstring").text = error.message
    detail = etree.SubElement(etree.SubElement(element, "detail"), q("xWebFault"), nsmap={None: NS})
    etree.SubElement(detail, q("Code")).text = error.code
    etree.SubElement(detail, q("Message")).text = error.message
    etree.SubElement(detail, q("Method")).text = operation or ""
    return _serialize(envelope)


def rows_node(obj: str, columns: list[str], rows: list[dict[str, Any]]) -> etree._Element:
    """`<{Object}Objects recordReturn="n"><{Object}Object><col>…</col>…` as xWeb returns result sets;
    NULL columns are left out of their row, as a DataSet's XML leaves them out."""
    root = etree.Element(q(f"{obj}Objects"), nsmap={None: NS})
    root.set("recordReturn", str(len(rows)))
    for row in rows:
        item = etree.SubElement(root, q(f"{obj}Object"))
        for name in columns:
            text = render_value(row.get(name))
            if text is not None:
                etree.SubElement(item, q(name)).text = text
    return root


def node_objects(obj: str, node: etree._Element | None) -> list[list[tuple[str, str | None]]]:
    """The objects of an oNode, `<{Object}Objects><{Object}Object>fields…`, matched by local name
    (clients send them qualified or not); each as (field, text) pairs in document order."""
    children = [c for c in node if isinstance(c.tag, str)] if node is not None else []
    if len(children) != 1 or etree.QName(children[0]).localname != f"{obj}Objects":
        raise XWebError(E.INVALID_NODE, f"oNode must hold one <{obj}Objects> element.")
    objects = [c for c in children[0] if isinstance(c.tag, str)]
    if not objects or any(etree.QName(o).localname != f"{obj}Object" for o in objects):
        raise XWebError(E.INVALID_NODE, f"<{obj}Objects> must hold one or more <{obj}Object> elements.")
    return [[(etree.QName(f).localname, _text(f)) for f in o if isinstance(f.tag, str)] for o in objects]


def _text(element: etree._Element) -> str | None:
    if element.get(f"{{{XSI}}}nil") in ("true", "1"):
        return None
    if any(isinstance(c.tag, str) for c in element):
        raise XWebError(E.INVALID_NODE, f"{etree.QName(element).localname} must hold text, not elements.")
    return element.text or ""


def _serialize(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))
