"""RADIUS packets on the wire: the checks made on the raw bytes before anything decodes
them, and the few attributes read straight from them.

Everything a NAS (or anyone else) sends is checked here first, so the decoder never sees a
length that lies: RFC 2865 section 3 (4096 octets at most, the Length field within the
datagram, octets beyond it ignored), section 5 (every attribute at least 2 octets and inside
the packet), section 5.26 (vendor-specific sub-attributes the same, none of length 0 or 1),
RFC 2869 5.14 (one Message-Authenticator, 16 octets).
"""

from __future__ import annotations

import struct

MAX_LENGTH = 4096
HEADER = 20
ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT = 1, 2, 3
ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE = 4, 5
STATUS_SERVER = 12
VENDOR_SPECIFIC, MESSAGE_AUTHENTICATOR = 26, 80
# vendors whose attributes follow RFC 2865's suggested format (type, length, value)
STANDARD_VSA_VENDORS = frozenset({14122, 14988, 14559})


class Malformed(ValueError):
    """The datagram is not a RADIUS packet we may decode; ``str()`` says why."""


def check(data: bytes) -> bytes:
    """The packet (``data`` cut to its Length field), or Malformed."""
    if len(data) < HEADER:
        raise Malformed(f"{len(data)} octets, shorter than a RADIUS header")
    (length,) = struct.unpack_from("!H", data, 2)
    if length < HEADER:
        raise Malformed(f"Length field {length} is below 20")
    if length > MAX_LENGTH:
        raise Malformed(f"Length field {length} is over 4096")
    if length > len(data):
        raise Malformed(f"Length field {length} is beyond the {len(data)} octets received")
    packet = data[:length]
    loc, authenticators = HEADER, 0
    while loc < length:
        if length - loc < 2:
            raise Malformed(f"attribute header cut off at octet {loc}")
        kind, size = packet[loc], packet[loc + 1]
        if size < 2 or loc + size > length:
            raise Malformed(f"attribute {kind} at octet {loc} has length {size}")
        if kind == MESSAGE_AUTHENTICATOR:
            authenticators += 1
            if size != 18:
                raise Malformed(f"Message-Authenticator of length {size}, not 18")
        elif kind == VENDOR_SPECIFIC:
            _check_vendor(packet[loc + 2 : loc + size], loc)
        loc += size
    if authenticators > 1:
        raise Malformed("more than one Message-Authenticator")
    return packet


def _check_vendor(value: bytes, at: int) -> None:
    if len(value) < 4:
        raise Malformed(f"Vendor-Specific at octet {at} has no vendor id")
    (vendor,) = struct.unpack_from("!I", value, 0)
    if vendor not in STANDARD_VSA_VENDORS:
        return  # kept raw by the decoder: nothing of it is read
    loc = 4
    while loc < len(value):
        if len(value) - loc < 2:
            raise Malformed(f"vendor {vendor} sub-attribute header cut off (octet {at})")
        size = value[loc + 1]
        if size < 2 or loc + size > len(value):
            raise Malformed(f"vendor {vendor} sub-attribute of length {size} (octet {at})")
        loc += size


def code_of(packet: bytes) -> int:
    return packet[0]


def dedup_key(packet: bytes, source: tuple[str, int]) -> tuple[str, int, int, bytes]:
    """What makes a request the same request (RFC 5080 2.2.2): the client's address and
    port, the Identifier and the Request Authenticator."""
    return (source[0], source[1], packet[1], packet[4:20])
