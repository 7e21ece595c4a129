"""conch.build.shell against BuildKit's own lexer tables (shell/envVarTest, shell/wordsTest).

The tables are read at test time from tests/data/buildkit/ (the repo copy) or, failing that,
from the workspace's ../shared/conformance/buildkit-parser/; see that README for the format.
Every line is its own test case, so a failure names the exact input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conch.build.shell import Lexer, ShellExpansionError

_HERE = Path(__file__).resolve()
_CANDIDATES = (
    _HERE.parents[1] / "data" / "buildkit",
    _HERE.parents[3] / "shared" / "conformance" / "buildkit-parser",
)
DATA = next((p for p in _CANDIDATES if (p / "shell").is_dir()), None)
pytestmark = pytest.mark.skipif(
    DATA is None, reason=f"BuildKit conformance data not found in {[str(p) for p in _CANDIDATES]}")

# TestShellParser4EnvVars's environment.
ENV_VAR_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_cases():
    if DATA is None:
        return []
    cases = []
    for lineno, line in enumerate((DATA / "shell" / "envVarTest").read_text().split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        platform, source, expected = (f.strip() for f in line.split("|"))
        if platform == "W":  # Windows-only expectations ($pwd == $PWD there)
            continue
        cases.append(pytest.param(source, expected, id=f"L{lineno}:{source}"))
    return cases


def _words_cases():
    if DATA is None:
        return []
    cases, env = [], {}
    for lineno, line in enumerate((DATA / "shell" / "wordsTest").read_text().split("\n"), 1):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("ENV "):
            key, _, value = line[4:].lstrip().partition("=")
            env = {**env, key: value}  # applies to the following lines only
            continue
        source, expected = line.split("|")
        cases.append(pytest.param(source.strip(), expected.lstrip().split(","), dict(env),
                                  id=f"L{lineno}:{source.strip()}"))
    return cases


@pytest.mark.parametrize("source,expected", _env_var_cases())
def test_envvar_table(source, expected):
    lexer = Lexer("\\")
    if expected == "error":
        with pytest.raises(ShellExpansionError):
            lexer.process_word(source, ENV_VAR_ENV)
    else:
        assert lexer.process_word(source, ENV_VAR_ENV) == expected


@pytest.mark.parametrize("source,expected,env", _words_cases())
def test_words_table(source, expected, env):
    try:
        got = Lexer("\\").process_words(source, env)
    except ShellExpansionError:
        got = ["error"]
    assert got == expected


def test_case_counts():
    # Guards against a silently broken reader: 228 envVarTest cases apply on Linux, 24 words.
    assert len(_env_var_cases()) == 228
    assert len(_words_cases()) == 24


# Beyond the tables: the modifiers the tables do not exercise, checked against bash.
@pytest.mark.parametrize("source,expected", [
    ("${F#*/}", "a/b/c.tar.gz"),
    ("${F##*/}", "c.tar.gz"),
    ("${F%.*}", "/a/b/c.tar"),
    ("${F%%.*}", "/a/b/c"),
    ("${F#x}", "/a/b/c.tar.gz"),
    ("${F/b/B}", "/a/B/c.tar.gz"),
    ("${F//\\//_}", "_a_b_c.tar.gz"),
    ("${F/?/X}", "Xa/b/c.tar.gz"),
    ("${UNSET-d}${EMPTY-d}", "d"),
    ("${UNSET+x}${EMPTY+x}", "x"),
    ("${EMPTY?}", ""),
])
def test_pattern_modifiers(source, expected):
    env = {"F": "/a/b/c.tar.gz", "EMPTY": ""}
    assert Lexer().process_word(source, env) == expected


def test_required_variable_messages():
    with pytest.raises(ShellExpansionError, match="X: is not allowed to be unset"):
        Lexer().process_word("${X?}", {})
    with pytest.raises(ShellExpansionError, match="X: is not allowed to be empty"):
        Lexer().process_word("${X:?}", {"X": ""})
    with pytest.raises(ShellExpansionError, match="X: set it please"):
        Lexer().process_word("${X:?set it please}", {})


def test_backtick_escape_token():
    lexer = Lexer("`")
    assert lexer.process_word(r"C:\path\`$X", {"X": "no"}) == r"C:\path\$X"
    assert lexer.process_words('a` b "c d"', {}) == ["a b", "c d"]


def test_raw_modes_and_skip_unset_keep_source_text():
    # The mode BuildKit's parser uses to find heredoc names in a RUN line.
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert lexer.process_words("cat <<'EOF' $A ${B:-x} \\n", {}) == [
        "cat", "<<'EOF'", "$A", "${B:-x}", "\\n"]


def test_expand_reports_matched_and_unmatched_names():
    exp = Lexer().expand("$A ${B:-x} $C", {"A": "1", "C": "3"})
    assert exp.result == "1 x 3"
    assert exp.words == ["1", "x", "3"]
    assert exp.matched == {"A", "C"} and exp.unmatched == {"B"}
