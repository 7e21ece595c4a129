"""The pure parts of conch.network.socklb (socklb_prog): map key/value bytes, the cgroup2 mount and
host-address parsers (the kernel side is tests/integration/test_network_socklb.py)."""

from __future__ import annotations

from conch.network import socklb_prog as prog
from conch.network.socklb import _entries, cgroup2_root, host_addresses

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
40 31 0:38 /sub /mnt/elsewhere rw,relatime - cgroup2 cgroup2 rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
"""

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.99.0.0/24 2 0 2
        |-- 10.99.0.0
           /24 link UNICAST
        |-- 10.99.0.1
           /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
     |-- 192.0.2.2
        /32 host LOCAL
        /24 link UNICAST
"""


def test_keys_and_values_are_network_order():
    assert prog.ports_key("tcp", "127.0.0.1", 8881) == bytes([127, 0, 0, 1, 0x22, 0xB1, 6, 0])
    assert prog.ports_key("udp", "0.0.0.0", 53) == bytes([0, 0, 0, 0, 0, 53, 17, 0])
    assert prog.addr_value("10.1.2.3", 80) == bytes([10, 1, 2, 3, 0, 80, 0, 0])
    assert prog.parse_addr_value(prog.addr_value("10.1.2.3", 80)) == ("10.1.2.3", 80)


def test_entries_skip_sctp_and_default_the_host_ip():
    ports = [dict(proto="tcp", host_ip="", host_port=1, container_ip="10.0.0.2", container_port=2),
             dict(proto="sctp", host_ip="0.0.0.0", host_port=3, container_ip="10.0.0.2", container_port=4),
             dict(proto="udp", host_ip="127.0.0.1", host_port=5, container_ip="10.0.0.3", container_port=6)]
    assert _entries(ports) == {
        prog.ports_key("tcp", "0.0.0.0", 1): prog.addr_value("10.0.0.2", 2),
        prog.ports_key("udp", "127.0.0.1", 5): prog.addr_value("10.0.0.3", 6)}


def test_cgroup2_root(tmp_path):
    (tmp_path / "mi").write_text(MOUNTINFO)
    assert cgroup2_root(str(tmp_path / "mi")) == "/sys/fs/cgroup/unified"
    (tmp_path / "v1").write_text(MOUNTINFO.splitlines()[0] + "\n")
    assert cgroup2_root(str(tmp_path / "v1")) is None
    assert cgroup2_root(str(tmp_path / "absent")) is None


def test_host_addresses_are_local_32s_outside_loopback(tmp_path):
    (tmp_path / "fib").write_text(FIB_TRIE)
    assert host_addresses(str(tmp_path / "fib")) == {"10.99.0.1", "192.0.2.2"}
