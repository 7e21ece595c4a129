"""Docker's detach keys: the key sequence on an attached stdin that ends the session
while the container (or exec) keeps running; ``ctrl-p,ctrl-q`` unless the client names
others (``detachKeys`` on attach, ``DetachKeys`` on exec create).

:func:`parse` is moby/term ``ToBytes`` (``a``, ``ctrl-a`` … ``ctrl-z``, ``ctrl-@``,
``ctrl-[``, ``ctrl-\\``, ``ctrl-]``, ``ctrl-^``, ``ctrl-_``, ``DEL``, comma-separated),
refusing anything else with dockerd's "Invalid detach keys (…) provided" (400).
:class:`Detector` is moby/term's escapeProxy: a key counts only when it arrives as a read
of its own (typed keys do; piped data comes in larger reads and never detaches), a
partial match is held back and handed on if the next key does not continue it.
"""

from __future__ import annotations

from conch.errors import InvalidArgument

DEFAULT = "ctrl-p,ctrl-q"
_CTRL = ["ctrl-@", *[f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)],
         "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]


def parse(keys: str) -> bytes:
    text = keys or DEFAULT
    out = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            out.append(ord(key) & 0xFF)
        elif key in _CTRL:
            out.append(_CTRL.index(key))
        elif key == "DEL":
            out.append(127)
        else:
            raise InvalidArgument(f"Invalid detach keys ({keys}) provided")
    return bytes(out)


class Detector:
    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pos = 0  # how many keys of the sequence have been seen (and held back)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence is complete: detach now)."""
        if not self.keys:
            return data, False
        held = self.keys[:self.pos]
        if len(data) != 1 or data[0] != self.keys[self.pos]:
            self.pos = 0
            return held + data, False
        if self.pos == len(self.keys) - 1:
            self.pos = 0
            return b"", True
        self.pos += 1
        return b"", False
