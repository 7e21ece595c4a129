"""conch.build.dockerignore: docker's documented .dockerignore examples (docs.docker.com,
"Dockerfile reference" -> ".dockerignore file"), then moby/patternmatcher's own match tables
(TestMatches, and the filepath.Match cases of TestMatch), all run through ``excluded``."""

from __future__ import annotations

import pytest

from conch.build.dockerignore import DockerIgnore, go_clean
from conch.errors import InvalidArgument

DOCS_EXAMPLE = """\
# comment
*/temp*
*/*/temp*
temp?
"""


@pytest.mark.parametrize("path,excluded", [
    ("somedir/temporary.txt", True),       # */temp*: names starting with temp one level down
    ("somedir/temp", True),
    ("somedir/temp/inside.txt", True),     # a matched directory takes its content with it
    ("somedir/subdir/temporary.txt", True),  # */*/temp*: two levels down
    ("tempa", True),                       # temp?: one more character, at the root
    ("tempb", True),
    ("temp", False),
    ("temporary.txt", False),              # */temp* does not apply at the root
    ("a/b/c/temp.txt", False),             # nor three levels down
    ("# comment", False),                  # the comment line is not a pattern
])
def test_docs_example(path, excluded):
    assert DockerIgnore.parse(DOCS_EXAMPLE).excluded(path) is excluded


def test_root_relative_patterns():
    # "/foo/bar and foo/bar both exclude a file or directory named bar in the foo
    # subdirectory ... Neither excludes anything else."
    for text in ("/foo/bar\n", "foo/bar\n", "./foo/bar/\n"):
        ignore = DockerIgnore.parse(text)
        assert ignore.patterns == ["foo/bar"]
        assert ignore.excluded("foo/bar") and ignore.excluded("foo/bar/x")
        assert not ignore.excluded("bar") and not ignore.excluded("x/foo/bar")
        assert not ignore.excluded("foo/barn")


def test_double_star_matches_any_depth():
    ignore = DockerIgnore.parse("**/*.go\n")
    assert ignore.excluded("main.go") and ignore.excluded("a/b/c/x.go")
    assert not ignore.excluded("go.mod")


def test_exception_reincludes():
    ignore = DockerIgnore.parse("*.md\n!README.md\n")
    assert ignore.excluded("CHANGES.md") and not ignore.excluded("README.md")
    assert ignore.has_exceptions


def test_last_matching_line_wins():
    ignore = DockerIgnore.parse("*.md\n!README*.md\nREADME-secret.md\n")
    assert ignore.excluded("CHANGES.md")
    assert not ignore.excluded("README.md") and not ignore.excluded("README-public.md")
    assert ignore.excluded("README-secret.md")
    ignore = DockerIgnore.parse("*.md\nREADME-secret.md\n!README*.md\n")
    assert not ignore.excluded("README-secret.md")  # the middle line has no effect


def test_include_only_listed_files():
    ignore = DockerIgnore.parse("*\n!src\n!Dockerfile\n")
    assert ignore.excluded("node_modules") and ignore.excluded("node_modules/a/b")
    assert not ignore.excluded("src") and not ignore.excluded("src/main.c")
    assert not ignore.excluded("Dockerfile")


def test_reader_details():
    text = "\ufeffa\r\n  b  \n#c\n \t\n! d \n/\n"
    assert DockerIgnore.parse(text).patterns == ["a", "b", "!d", "/"]
    assert not DockerIgnore.parse("*\n").excluded(".")  # the root is never excluded
    assert not DockerIgnore.parse("*\n").excluded("/")


@pytest.mark.parametrize("pattern", ["!", "[", "a[", "[^bc", "\\", "[]a]", "[-]", "[x-]",
                                     "[a-b-c]", "[z-a]"])
def test_bad_patterns_are_rejected(pattern):
    with pytest.raises(InvalidArgument):
        DockerIgnore([pattern])


@pytest.mark.parametrize("path,cleaned", [
    ("", "."), ("./a/", "a"), ("a//b/../c", "a/c"), ("//x", "/x"), ("/../a", "/a"),
    ("../a", "../a"),
])
def test_go_clean(path, cleaned):
    assert go_clean(path) == cleaned


# patternmatcher_test.go TestMatches (MatchesOrParentMatches): (pattern, path, matches).
PATTERNMATCHER_CASES = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "dir/file", True), ("**/", "dir/file", True), ("**", "dir/file/", True),
    ("**/", "dir/file/", True), ("**/**", "dir/file", True), ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True), ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True), ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True), ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True), ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True), ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True),
    (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False),
    ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
    # TestMatch's filepath.Match table (the error rows are in test_bad_patterns_are_rejected)
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False),
    ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True),
    ("[x\\-]", "z", False), ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize("pattern,path,matches", PATTERNMATCHER_CASES)
def test_patternmatcher_table(pattern, path, matches):
    assert DockerIgnore([pattern]).excluded(path) is matches


@pytest.mark.parametrize("patterns,path,matches", [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
])
def test_patternmatcher_multi_pattern_table(patterns, path, matches):
    assert DockerIgnore(patterns).excluded(path) is matches


@pytest.mark.parametrize("patterns,directory,walk", [
    (["dir", "!dir/keep"], "dir", True),          # an exception below: walk it
    (["dir", "!dir/sub/keep"], "dir/sub", True),
    (["dir", "!dir/keep"], "other", False),
    (["dir"], "dir", False),                      # no exception at all
    (["dir", "!dirty"], "dir", False),            # "dirty/" does not start with "dir/"
    (["dir", "!**/keep"], "dir", False),          # moby's prefix test, quirk kept
])
def test_may_reinclude_below(patterns, directory, walk):
    """moby archive.TarWithOptions: an excluded directory is still walked when an
    exception pattern starts with "<dir>/"."""
    assert DockerIgnore(patterns).may_reinclude_below(directory) is walk
