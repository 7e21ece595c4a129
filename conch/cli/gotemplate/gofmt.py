"""A subset of Go's ``fmt`` (Sprint, Sprintln, Sprintf) and ``strconv`` quoting, enough
for what templates print: the verbs ``%v %+v %s %q %d %t %T %x %X %o %b %c %e %f %g %U %%``
with flags ``-+# 0``, widths and precisions, and fmt's ``%!verb(type=value)`` complaints."""

from __future__ import annotations

from conch.cli.gotemplate.values import NOVALUE, GoMap, GoSlice, NilPtr, Struct, go_type


_ESC = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
        "\\": "\\", "'": "'", '"': '"'}
# strconv.Quote's escapes: _ESC read the other way (a "'" stays as is inside "...")
_QUOTE = {ch: "\\" + letter for letter, ch in _ESC.items() if letter != "'"}


def go_quote(s: str) -> str:
    """``strconv.Quote``."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _QUOTE:
            out.append(_QUOTE[ch])
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and o > 0x7F:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_unquote(s: str) -> str:
    """``strconv.Unquote`` for "..." and `...` literals; ValueError("invalid syntax")."""
    if len(s) >= 2 and s[0] == s[-1] == "`":
        if "`" in s[1:-1]:
            raise ValueError("invalid syntax")
        return s[1:-1].replace("\r", "")
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError("invalid syntax")
    body = s[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == '"' or c == "\n":
            raise ValueError("invalid syntax")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise ValueError("invalid syntax")
        e = body[i]
        i += 1
        if e in _ESC and e != "'":
            out.append(_ESC[e])
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            h = body[i:i + n]
            if len(h) != n or any(c not in "0123456789abcdefABCDEF" for c in h):
                raise ValueError("invalid syntax")
            out.append(chr(int(h, 16)))
            i += n
        elif e in "01234567":
            o = body[i - 1:i + 2]
            if len(o) != 3 or any(c not in "01234567" for c in o) or int(o, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(o, 8)))
            i += 2
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


# -- %v -----------------------------------------------------------------------------


def fmt_float_g(f: float, prec: int = -1, upper: bool = False) -> str:
    """strconv.FormatFloat(f, 'g', prec, 64): shortest digits when prec < 0, then %e when
    the exponent is < -4 or >= the precision (6 for shortest)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    if prec < 0:
        mant, _, exp = f"{f:.17e}".partition("e")
        for p in range(1, 18):  # the shortest that reads back (what repr finds)
            m, _, x = f"{f:.{p - 1}e}".partition("e")
            if float(f"{m}e{x}") == f:
                mant, exp = m, x
                break
        eprec = 6
    else:
        mant, _, exp = f"{f:.{max(prec, 1) - 1}e}".partition("e")
        eprec = max(prec, 1)
    neg = mant.startswith("-")
    digits = mant.lstrip("-").replace(".", "").rstrip("0") or "0"
    e = int(exp)
    if prec >= 0 and eprec > len(digits) and len(digits) >= e + 1:
        eprec = len(digits)
    if e < -4 or e >= eprec:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        s = f"{m}{'E' if upper else 'e'}{'-' if e < 0 else '+'}{abs(e):02d}"
    elif e < 0:
        s = "0." + "0" * (-e - 1) + digits
    else:
        s = digits[:e + 1].ljust(e + 1, "0") + ("." + digits[e + 1:] if len(digits) > e + 1 else "")
    return ("-" if neg else "") + s


def sprint_value(v, depth: int = 0, plus: bool = False) -> str:
    """fmt's %v (``plus``: %+v, struct field names)."""
    if v is NOVALUE:
        return "<no value>" if depth == 0 else "<invalid reflect.Value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, NilPtr):
        return "<nil>"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return fmt_float_g(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, Struct):
        if v.ptr and depth > 0:
            return "0xc000010000"  # an address: Go prints nested pointers so
        from conch.cli.gotemplate.typed import struct_groups

        groups = struct_groups(v.gotype) or [(None, list(v.fields))]
        parts = []
        for gname, names in groups:
            one = [(f"{k}:" if plus else "") + sprint_value(v.fields[k], depth + 1, plus) for k in names]
            if gname is None:
                parts.extend(one)
            else:
                parts.append((f"{gname}:" if plus else "") + "{" + " ".join(one) + "}")
        inner = " ".join(parts)
        return ("&" if v.ptr and depth == 0 and False else "") + "{" + inner + "}"
    if isinstance(v, dict):
        if hasattr(v, "go_type_name"):
            return "&{}"  # a formatter context printed whole: docker prints its address
        items = sorted(v.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{sprint_value(k, depth + 1, plus)}:{sprint_value(x, depth + 1, plus)}"
                                 for k, x in items) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(sprint_value(x, depth + 1, plus) for x in v) + "]"
    if callable(v):
        return "0x4a0000"
    return str(v)


def _sort_key(k):
    # fmt sorts map keys (internal/fmtsort): numbers by value, strings bytewise
    if isinstance(k, bool):
        return (0, int(k), "")
    if isinstance(k, (int, float)):
        return (1, k, "")
    return (2, 0, str(k).encode("utf-8", "surrogateescape"))


def sprint(*args) -> str:
    """``fmt.Sprint``: spaces between operands when neither side is a string."""
    out = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_top(a))
        prev_string = is_string
    return "".join(out)


def sprintln(*args) -> str:
    return " ".join(_top(a) for a in args) + "\n"


def _top(a) -> str:
    # fmt prints a pointer to a struct at the top level as &{...}
    if isinstance(a, Struct) and a.ptr:
        return "&" + sprint_value(Struct(a.gotype, a.fields, False))
    return sprint_value(a)


# -- Sprintf ---------------------------------------------------------------------------


def _bad(verb: str, v) -> str:
    if v is None or v is NOVALUE:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={_top(v)})"


def _pad(s: str, flags: str, width: int | None, zero_ok: bool = False) -> str:
    if width is None or len(s) >= width:
        return s
    if "-" in flags:
        return s + " " * (width - len(s))
    if "0" in flags and zero_ok:
        sign = s[0] if s[:1] in "+- " and s[:1] else ""
        body = s[len(sign):]
        return sign + "0" * (width - len(s)) + body
    return " " * (width - len(s)) + s


def _fmt_int(v: int, verb: str, flags: str, prec: int | None) -> str:
    n = abs(int(v))
    if verb == "d":
        digits = str(n)
    elif verb in "xX":
        digits = format(n, "x" if verb == "x" else "X")
    elif verb == "o":
        digits = format(n, "o")
    elif verb == "O":
        digits = format(n, "o")
    elif verb == "b":
        digits = format(n, "b")
    else:
        digits = str(n)
    if prec is not None:
        digits = "" if prec == 0 and n == 0 else digits.rjust(prec, "0")
    if "#" in flags:
        digits = {"x": "0x", "X": "0X", "o": "0", "b": ""}.get(verb, "") + digits
    if verb == "O":
        digits = "0o" + digits
    sign = "-" if v < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
    return sign + digits


def _fmt_float(v: float, verb: str, flags: str, prec: int | None) -> str:
    if verb in "vgG":
        s = fmt_float_g(v, -1 if prec is None else prec, verb == "G")
    elif verb in "eE":
        s = f"{v:.{6 if prec is None else prec}{verb}}"
    elif verb in "fF":
        s = f"{v:.{6 if prec is None else prec}f}"
    else:
        return _bad(verb, v)
    if "+" in flags and not s.startswith("-"):
        s = "+" + s
    return s


def _fmt_one(verb: str, v, flags: str, width: int | None, prec: int | None) -> str:
    """One operand: the string before padding, and whether 0-padding applies."""
    if verb == "T":
        return _pad(go_type(v), flags, width)
    if verb == "v" and isinstance(v, (list, tuple, dict, Struct)) or verb in "sqxXd" and \
            isinstance(v, (list, tuple)) and not isinstance(v, str):
        if verb == "v" or isinstance(v, (list, tuple)):
            if isinstance(v, (list, tuple)) and verb != "v":
                return "[" + " ".join(_fmt_one(verb, x, flags, width, prec) for x in v) + "]"
            return _pad(sprint_value(v, 0, "+" in flags) if not (isinstance(v, Struct) and v.ptr)
                        else "&" + sprint_value(Struct(v.gotype, v.fields), 0, "+" in flags),
                        flags, width)
    if verb == "v" and "#" in flags:  # Go syntax, for the scalars a template meets
        if isinstance(v, str) and not hasattr(v, "gotype"):
            return _pad(go_quote(v), flags.replace("#", ""), width)
        if v is None:
            return _pad("<nil>", flags, width)
    if isinstance(v, NilPtr) and verb in "dxXob":
        return _pad(_fmt_int(0, verb, flags, prec), flags, width)  # a nil pointer's address
    if v is None or v is NOVALUE or isinstance(v, NilPtr):
        if verb == "v":
            return _pad("<nil>", flags, width)
        return _bad(verb, v) if not isinstance(v, NilPtr) else f"%!{verb}({v.gotype}=<nil>)"
    if isinstance(v, bool):
        if verb in "vt":
            return _pad("true" if v else "false", flags, width)
        return _bad(verb, v)
    if isinstance(v, int):
        if verb in "vdxXobO":
            return _pad(_fmt_int(v, "d" if verb == "v" else verb, flags, prec), flags, width,
                        zero_ok=prec is None)
        if verb == "c":
            return _pad(chr(v), flags, width)
        if verb == "q":
            return _pad("'" + go_quote(chr(v))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'",
                        flags, width)
        if verb == "U":
            return _pad(f"U+{v:04X}", flags, width)
        if verb in "eEfFgG":
            return _bad(verb, v)
        return _bad(verb, v)
    if isinstance(v, float):
        if verb in "veEfFgG":
            return _pad(_fmt_float(v, verb, flags, prec), flags, width, zero_ok=True)
        return _bad(verb, v)
    if isinstance(v, str):
        if verb in "vs":
            s = v if prec is None else v[:prec]
            return _pad(s, flags, width)
        if verb == "q":
            s = v if prec is None else v[:prec]
            if "#" in flags and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
                return _pad("`" + s + "`", flags, width)
            return _pad(go_quote(s), flags, width)
        if verb in "xX":
            b = v.encode("utf-8", "surrogateescape")
            if prec is not None:
                b = b[:prec]
            h = b.hex()
            if " " in flags:
                h = " ".join(b[i:i + 1].hex() for i in range(len(b)))
            if verb == "X":
                h = h.upper()
            return _pad(h, flags, width)
        return _bad(verb, v)
    if isinstance(v, dict):
        if verb in "sqdxX":
            items = sorted(v.items(), key=lambda kv: _sort_key(kv[0]))
            return "map[" + " ".join(f"{_fmt_one(verb, k, flags, width, prec)}:"
                                     f"{_fmt_one(verb, x, flags, width, prec)}"
                                     for k, x in items) + "]"
        return _bad(verb, v)
    if isinstance(v, Struct):
        if verb in "sqdxX":
            inner = " ".join(_fmt_one(verb, x, flags, width, prec) for x in v.fields.values())
            return ("&" if v.ptr else "") + "{" + inner + "}"
        return _bad(verb, v)
    return _pad(sprint_value(v), flags, width)


def sprintf(fmt: str, *args) -> str:
    out = []
    argi = 0
    i = 0
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width = prec = None
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and isinstance(args[argi], int) and not isinstance(args[argi], bool):
                width = int(args[argi])
                if width < 0:
                    flags += "-"
                    width = -width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                width = int(fmt[k:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and isinstance(args[argi], int):
                    prec = int(args[argi])
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[k:i]) if i > k else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[argi]
        argi += 1
        if verb not in "vTtsqdxXobOcUeEfFgG":
            out.append(_bad(verb, v))
            continue
        out.append(_fmt_one(verb, v, flags, width, prec))
    if argi < len(args):
        out.append("%!(EXTRA " + ", ".join(
            "<nil>" if a is None else f"{go_type(a)}={_top(a)}" for a in args[argi:]) + ")")
    return "".join(out)
