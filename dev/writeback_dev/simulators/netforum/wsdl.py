"""The service description served at `?WSDL`, in the shape ASP.NET gives xWeb's: document/literal
wrapped, `AuthorizationToken` as a SOAP header on every output and on every input but Authenticate's,
XmlNode parameters and results as mixed content holding `xsd:any`."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from .soap import NS

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XS = "http://www.w3.org/2001/XMLSchema"
SERVICE = "netFORUMXML"
PORT = "netFORUMXMLSoap"


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    params: tuple[tuple[str, str], ...]  # (name, "string" | "node")
    result: str  # "string" | "node"
    doc: str

    @property
    def needs_token(self) -> bool:
        return self.name != "Authenticate"


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "Authenticate",
            (("userName", "string"), ("password", "string")),
            "string",
            "Returns the authentication token in the AuthorizationToken SOAP header; call it first.",
        ),
        Operation(
            "GetQuery",
            (
                ("szObjectName", "string"),
                ("szColumnList", "string"),
                ("szWhereClause", "string"),
                ("szOrderBy", "string"),
            ),
            "node",
            "Selects columns of an object's rows matching a WHERE clause.",
        ),
        Operation(
            "GetFacadeObject",
            (("szObjectName", "string"), ("szObjectKey", "string")),
            "node",
            "Returns one facade object by its primary key.",
        ),
        Operation(
            "InsertFacadeObject",
            (("szObjectName", "string"), ("oNode", "node")),
            "node",
            "Inserts the objects of oNode and returns them with their new keys.",
        ),
        Operation(
            "UpdateFacadeObject",
            (("szObjectName", "string"), ("szObjectKey", "string"), ("oNode", "node")),
            "node",
            "Updates one facade object and returns it as modified.",
        ),
    )
}


def build(location: str) -> bytes:
    """The WSDL with its soap:address pointing at `location`, the URL the client fetched it from."""
    root = etree.Element(
        _w("definitions"),
        nsmap={"wsdl": WSDL, "soap": WSDL_SOAP, "s": XS, "tns": NS},
        targetNamespace=NS,
    )
    _types(root)
    _messages(root)
    _port_type(root)
    _binding(root)
    service = etree.SubElement(root, _w("service"), name=SERVICE)
    port = etree.SubElement(service, _w("port"), name=PORT, binding=f"tns:{PORT}")
    etree.SubElement(port, f"{{{WSDL_SOAP}}}address", location=location)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True))


def _w(name: str) -> str:
    return f"{{{WSDL}}}{name}"


def _s(name: str) -> str:
    return f"{{{XS}}}{name}"


def _types(root: etree._Element) -> None:
    schema = etree.SubElement(
        etree.SubElement(root, _w("types")), _s("schema"), elementFormDefault="qualified", targetNamespace=NS
    )
    for op in OPERATIONS.values():
        _wrapper(schema, op.name, op.params)
        _wrapper(schema, f"{op.name}Response", ((f"{op.name}Result", op.result),))
    etree.SubElement(schema, _s("element"), name="AuthorizationToken", type="tns:AuthorizationToken")
    token = etree.SubElement(schema, _s("complexType"), name="AuthorizationToken")
    _optional(etree.SubElement(token, _s("sequence")), "Token", "s:string")
    etree.SubElement(token, _s("anyAttribute"))


def _wrapper(schema: etree._Element, name: str, fields: tuple[tuple[str, str], ...]) -> None:
    sequence = etree.SubElement(
        etree.SubElement(etree.SubElement(schema, _s("element"), name=name), _s("complexType")),
        _s("sequence"),
    )
    for field, kind in fields:
        if kind == "string":
            _optional(sequence, field, "s:string")
            continue
        element = _optional(sequence, field, None)
        mixed = etree.SubElement(element, _s("complexType"), mixed="true")
        etree.SubElement(etree.SubElement(mixed, _s("sequence")), _s("any"))


def _optional(parent: etree._Element, name: str, type_: str | None) -> etree._Element:
    attrs = {"minOccurs": "0", "maxOccurs": "1", "name": name}
    if type_:
        attrs["type"] = type_
    return etree.SubElement(parent, _s("element"), attrs)


def _messages(root: etree._Element) -> None:
    for op in OPERATIONS.values():
        for suffix, element in (("SoapIn", op.name), ("SoapOut", f"{op.name}Response")):
            message = etree.SubElement(root, _w("message"), name=f"{op.name}{suffix}")
            etree.SubElement(message, _w("part"), name="parameters", element=f"tns:{element}")
        header = etree.SubElement(root, _w("message"), name=f"{op.name}AuthorizationToken")
        etree.SubElement(header, _w("part"), name="AuthorizationToken", element="tns:AuthorizationToken")


def _port_type(root: etree._Element) -> None:
    port_type = etree.SubElement(root, _w("portType"), name=PORT)
    for op in OPERATIONS.values():
        operation = etree.SubElement(port_type, _w("operation"), name=op.name)
        etree.SubElement(operation, _w("documentation")).text = op.doc
        etree.SubElement(operation, _w("input"), message=f"tns:{op.name}SoapIn")
        etree.SubElement(operation, _w("output"), message=f"tns:{op.name}SoapOut")


def _binding(root: etree._Element) -> None:
    binding = etree.SubElement(root, _w("binding"), name=PORT, type=f"tns:{PORT}")
    etree.SubElement(binding, f"{{{WSDL_SOAP}}}binding", transport="http://schemas.xmlsoap.org/soap/http")
    for op in OPERATIONS.values():
        operation = etree.SubElement(binding, _w("operation"), name=op.name)
        etree.SubElement(operation, f"{{{WSDL_SOAP}}}operation", soapAction=NS + op.name, style="document")
        for direction, with_header in (("input", op.needs_token), ("output", True)):
            element = etree.SubElement(operation, _w(direction))
            etree.SubElement(element, f"{{{WSDL_SOAP}}}body", use="literal")
            if with_header:
                etree.SubElement(
                    element,
                    f"{{{WSDL_SOAP}}}header",
                    message=f"tns:{op.name}AuthorizationToken",
                    part="AuthorizationToken",
                    use="literal",
                )
