"""Classic BPF programs handed to the kernel for a socket (struct sock_filter: code, jt, jf,
k; struct sock_fprog: their count and address)."""

from __future__ import annotations

import array
import socket
import struct

SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h: which packets a socket receives
SO_ATTACH_REUSEPORT_CBPF = 51  # which socket of a SO_REUSEPORT group receives (Linux 4.5)

# the instructions this project uses
LD_HALF_AT = 0x28  # BPF_LD|BPF_H|BPF_ABS: A = the 16 bits at offset k (network order)
LD_WORD_AT = 0x20  # BPF_LD|BPF_W|BPF_ABS: A = the 32 bits at offset k (network order)
MOD_BY = 0x94  # BPF_ALU|BPF_MOD|BPF_K: A = A % k
JUMP_IF_EQUAL = 0x15  # BPF_JMP|BPF_JEQ|BPF_K: skip jt instructions if A == k, else jf
RETURN_A = 0x16  # BPF_RET|BPF_A
RETURN = 0x06  # BPF_RET|BPF_K: k bytes of the packet (0: drop it)

Instruction = tuple[int, int, int, int]


def attach(sock: socket.socket, option: int, program: list[Instruction]) -> None:
    """Give ``sock`` the program (``option``: SO_ATTACH_FILTER or
    SO_ATTACH_REUSEPORT_CBPF); raises OSError where the kernel refuses it."""
    filters = array.array("B", b"".join(struct.pack("HBBI", *i) for i in program))
    address, _ = filters.buffer_info()  # where the instructions are, for the kernel to copy
    fprog = struct.pack("HP", len(program), address)
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)
