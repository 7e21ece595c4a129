"""conch.cli.flags (the fast flag parser) agrees with the argparse parser it stands in for.

Every command line below goes through the real verb (``main([...])``), whose parser is
intercepted: the fast path's namespace must equal the argparse parser's
(``conch.cli.argparser.Parser``, the grammar the CLI had before), or the fast path must
decline (return None) so argparse decides. Lines marked FAST must be taken by the fast
path: they are the common shapes the start-up saving is for.
"""

import pytest

from conch.cli import flags
from conch.cli.main import UsageError, main


class _Stop(Exception):
    pass


def _parsers(verb_argv):
    """Run the verb until it parses; return (fast result, argparse result or exception)."""
    got = {}
    real_parse = flags.Parser.parse

    def spy(self, argv, stop_after=0):
        got["fast"] = self._fast(list(argv), stop_after)
        try:
            got["slow"] = self._slow().parse(list(argv), stop_after)
        except (UsageError, SystemExit) as exc:
            got["slow"] = exc
        raise _Stop

    flags.Parser.parse = spy
    try:
        with pytest.raises(_Stop):
            main(list(verb_argv), client=object())
    finally:
        flags.Parser.parse = real_parse
    return got["fast"], got["slow"]


FAST = [
    # run / create
    "run busybox", "run --rm busybox true", "run --rm --network none busybox true",
    "run -d busybox top", "run -it busybox sh", "run -dit --name web busybox",
    "run -e A=1 -e B= --env C=3 --env=D=4 -eE=5 -e=F=6 busybox env",
    "run --rm=false busybox", "run -d=false busybox", "run --sig-proxy=false busybox",
    "run --detach=true busybox", "run -itp 8080:80 busybox", "run -p8080:80 busybox",
    "run -v /a:/b -v=/c:/d --volume /e:/f busybox", "run -h box -w /srv -u 0:0 busybox",
    "run --name x --name y busybox", "run --memory-swappiness 10 -c 512 busybox",
    "run --pull never busybox", "run --pull=always busybox", "run --net=host busybox",
    "run --network-alias a --net-alias b busybox", "run --entrypoint= busybox",
    "run busybox sh -c 'echo -n hi' --rm -d", "run busybox -- x", "run -a stdout -a=stderr busybox",
    "run --restart=on-failure:3 --stop-timeout 5 busybox", "run -l a=b --label=c=d busybox",
    "run --cpus 1.5 -m 64m --pids-limit 10 busybox", "run - busybox",
    "create busybox", "create --name c1 -e X=1 busybox sleep 9", "create -q busybox",
    # the other hot verbs
    "ps", "ps -a", "ps -aq", "ps -a -q --no-trunc", "ps --format {{.ID}}", "ps -n 3", "ps -n=3",
    "ps -f status=exited --filter=name=x", "ps -l", "ps -s", "ps --all=false",
    "start c1", "start -a c1", "start -ai c1", "start c1 c2 c3",
    "rm c1", "rm -f c1 c2", "rm -fv c1", "rm --force=true c1",
    "stop c1", "stop -t 3 c1 c2", "stop --time=0 c1", "stop -s KILL c1",
    "kill c1", "kill -s HUP c1", "kill --signal=9 c1 c2",
    "exec c1 true", "exec -it c1 sh", "exec -e A=1 -w /tmp -u 0 c1 env", "exec -d c1 sleep 1",
    "exec c1 sh -c 'ls -l'", "inspect c1", "inspect -f {{.Id}} c1 c2", "inspect --type container c1",
    "logs c1", "logs -f --tail 5 c1", "images", "images -q", "wait c1",
]

SLOW = [
    # argparse decides: help, errors, rare shapes (identical behaviour by construction)
    "run --help", "run", "run --bogus busybox", "run -Z busybox", "run --rm=maybe busybox",
    "run -e", "run --name", "run -e -x busybox", "run --memory-swappiness abc busybox",
    "run --pull sometimes busybox", "run -- busybox true", "run -ti=1 busybox",
    "ps --help", "ps -h", "ps -n x", "ps extra", "ps --bogus", "ps -n -1",
    "rm", "rm c1 -f", "rm --bogus c1", "stop -t c1", "kill -s", "exec", "exec c1",
    "start -- c1", "inspect", "inspect --help",
]


@pytest.mark.parametrize("line", FAST + SLOW)
def test_fast_path_agrees_with_argparse(line):
    import shlex

    fast, slow = _parsers(shlex.split(line))
    if fast is not None:
        assert not isinstance(slow, BaseException), (line, fast, slow)
        assert vars(fast) == vars(slow), line
    if line in FAST:
        assert fast is not None, f"{line!r} should take the fast path"


def test_parse_returns_argparse_result_when_fast_path_declines(capsys):
    # the real parse() (not the spy): errors are argparse's texts and docker's exit codes
    assert main(["run", "--bogus", "busybox"], client=object()) == 125
    err = capsys.readouterr().err
    assert err == "unknown flag: --bogus\nSee 'conch run --help'.\n"
    assert main(["ps", "--no-such"], client=object()) == 125
    assert capsys.readouterr().err == "unknown flag: --no-such\nSee 'conch ps --help'.\n"
    assert main(["run", "--rm=maybe", "busybox"], client=object()) == 125
    assert 'strconv.ParseBool: parsing "maybe": invalid syntax' in capsys.readouterr().err
    assert main(["rm"], client=object()) == 1
    assert '"conch rm" requires at least 1 argument.' in capsys.readouterr().err
    assert main(["ps", "--help"], client=object()) == 0
    assert "List containers" in capsys.readouterr().out


def test_append_defaults_are_not_shared_between_parses():
    p = flags.Parser("conch x")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("name")
    first = p.parse(["-e", "A=1", "c"])
    second = p.parse(["c"])
    assert first.env == ["A=1"] and second.env == [] and first.rest == []


def test_stop_after_keeps_the_command_verbatim():
    p = flags.Parser("conch run", add_help=False)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("image")
    ns = p.parse(["-d", "busybox", "sh", "-c", "--", "-d"], stop_after=1)
    assert (ns.detach, ns.image, ns.rest) == (True, "busybox", ["sh", "-c", "--", "-d"])


def test_the_hot_path_does_not_import_argparse():
    import subprocess
    import sys

    import conch

    repo = conch.__path__[0].rsplit("/", 1)[0]
    code = (f"import sys; sys.path.insert(0, {repo!r})\n"
            "from conch.cli.main import Context\n"
            "from conch.cli import run_flags\n"
            "p = Context(None, False, 'conch run').parser('x', 'y', add_help=False)\n"
            "run_flags.add_flags(p, run=True)\n"
            "ns = p.parse(['--rm', '-it', '-e', 'A=1', 'busybox', 'true'], stop_after=1)\n"
            "assert ns.rm and ns.tty and ns.env == ['A=1'], ns\n"
            "print('argparse' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
