"""fastjson.loads in a lean process: _json words a bad string's error (a raw control
character, a bad escape) with json.decoder's class, which it looks up in sys.modules
only. The runtime never imports json, so these once came out as a SystemError traceback
(found when the C front's differential tests fed config.json a control character)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from conch.oci import fastjson
assert "json.decoder" not in sys.modules
for bad in (b'{"a": "x\x01"}', b'["\\q"]'):
    try:
        fastjson.loads(bad)
    except ValueError as e:
        print(type(e).__name__, e)
"""


def test_bad_strings_are_value_errors_without_the_json_module():
    out = subprocess.run([sys.executable, "-I", "-S", "-c", CODE, str(REPO)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "JSONDecodeError Invalid control character at: line 1 column 9 (char 8)",
        "JSONDecodeError Invalid \\escape: line 1 column 3 (char 2)"]
