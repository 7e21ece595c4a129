"""conch.kernel.bpf's assembler: table tests against the bytes of ``struct bpf_insn``
as the kernel and llvm-objdump know them (no syscalls, no root)."""

from __future__ import annotations

import pytest

from conch.kernel import bpf
from conch.kernel.bpf import FP, R0, R1, R2, R6, R8, R9, Label

ENCODINGS = [
    # (instruction, bytes as llvm-objdump prints them, what objdump calls it)
    (bpf.mov_imm(R0, 1), "b7 00 00 00 01 00 00 00"),            # r0 = 1
    (bpf.exit_(), "95 00 00 00 00 00 00 00"),                     # exit
    (bpf.mov(R6, R1), "bf 16 00 00 00 00 00 00"),                 # r6 = r1
    (bpf.alu64("add", R2, -8), "07 02 00 00 f8 ff ff ff"),        # r2 += -8
    (bpf.alu64("and", R1, 0xff), "57 01 00 00 ff 00 00 00"),      # r1 &= 255
    (bpf.alu64("add", R1, R2, reg=True), "0f 21 00 00 00 00 00 00"),  # r1 += r2
    (bpf.ldx(4, R2, R1, 4), "61 12 04 00 00 00 00 00"),           # r2 = *(u32 *)(r1 + 4)
    (bpf.ldx(2, R1, R9, 4), "69 91 04 00 00 00 00 00"),           # r1 = *(u16 *)(r9 + 4)
    (bpf.ldx(1, R1, R6, 4), "71 61 04 00 00 00 00 00"),           # r1 = *(u8 *)(r6 + 4)
    (bpf.ldx(8, R0, R1, 0), "79 10 00 00 00 00 00 00"),           # r0 = *(u64 *)(r1 + 0)
    (bpf.stx(8, FP, -8, R1), "7b 1a f8 ff 00 00 00 00"),          # *(u64 *)(r10 - 8) = r1
    (bpf.stx(4, R6, 24, R1), "63 16 18 00 00 00 00 00"),          # *(u32 *)(r6 + 24) = r1
    (bpf.stx(2, FP, -12, R8), "6b 8a f4 ff 00 00 00 00"),         # *(u16 *)(r10 - 12) = r8
    (bpf.stx(1, FP, -10, R9), "73 9a f6 ff 00 00 00 00"),         # *(u8 *)(r10 - 10) = r9
    (bpf.st(8, FP, -16, 0), "7a 0a f0 ff 00 00 00 00"),           # *(u64 *)(r10 - 16) = 0
    (bpf.st(4, FP, -16, 7), "62 0a f0 ff 07 00 00 00"),           # *(u32 *)(r10 - 16) = 7
    (bpf.jmp("jeq", R0, 0, 3), "15 00 03 00 00 00 00 00"),        # if r0 == 0 goto +3
    (bpf.jmp("jne", R0, 0, 2), "55 00 02 00 00 00 00 00"),        # if r0 != 0 goto +2
    (bpf.jmp("jne", R0, R1, 5, reg=True), "5d 10 05 00 00 00 00 00"),  # if r0 != r1 goto +5
    (bpf.jmp("jeq", R1, 127, -4), "15 01 fc ff 7f 00 00 00"),     # if r1 == 127 goto -4
    (bpf.ja(1), "05 00 01 00 00 00 00 00"),                       # goto +1
    (bpf.call(1), "85 00 00 00 01 00 00 00"),                     # call 1 (map_lookup_elem)
    (bpf.call(122), "85 00 00 00 7a 00 00 00"),                   # call 122 (get_netns_cookie)
    (bpf.ld_map(R1, 0xfd),                                        # r1 = map fd 253 ll
     "18 11 00 00 fd 00 00 00 00 00 00 00 00 00 00 00"),
    (bpf.ld_imm64(R1, 0x1122334455667788),                        # r1 = 0x11..88 ll
     "18 01 00 00 88 77 66 55 00 00 00 00 44 33 22 11"),
]


@pytest.mark.parametrize("insn, expected", ENCODINGS, ids=[e[1][:8] for e in ENCODINGS])
def test_encodings(insn, expected):
    assert bpf.assemble([insn]).hex(" ") == expected


def test_labels_count_ld_imm64_as_two_slots():
    code = bpf.assemble([
        bpf.jmp("jeq", R0, 0, "end"),      # 0: over the two slots of ld_imm64 and the mov
        bpf.ld_imm64(R1, 1),               # 1, 2
        bpf.mov_imm(R0, 2),                # 3
        Label("end"),
        bpf.jmp("jne", R0, 0, "end"),      # 4: a backward jump to itself
        bpf.exit_(),
    ])
    insns = [code[i:i + 8] for i in range(0, len(code), 8)]
    assert len(insns) == 6
    assert insns[0].hex(" ") == "15 00 03 00 00 00 00 00"
    assert insns[4].hex(" ") == "55 00 ff ff 00 00 00 00"


def test_label_errors():
    with pytest.raises(ValueError, match="unknown label"):
        bpf.assemble([bpf.ja("nowhere")])
    with pytest.raises(ValueError, match="twice"):
        bpf.assemble([Label("a"), Label("a")])


def test_programs_assemble_to_whole_instructions():
    from conch.network import socklb_prog as prog

    fwd = bpf.assemble(prog.forward(ports_fd=3, local_fd=4, rev_fd=5, netns_cookie=1 << 40))
    rev = bpf.assemble(prog.reverse(rev_fd=5))
    assert len(fwd) % 8 == 0 and len(rev) % 8 == 0
    assert fwd.endswith(bytes.fromhex("b700000001000000 9500000000000000".replace(" ", "")))
