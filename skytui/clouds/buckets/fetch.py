"""The node's side of a bucket mount: the script that fetches signed objects
into a target directory, and its input. Signed URLs travel only on its stdin.
"""

from __future__ import annotations

from skytui.clouds.buckets.store import SignedObject

# The node's fetch script exits with this, having written nothing, when a
# path it was given would land outside its target.
FETCH_REFUSED_EXIT = 4


# Reads `mode<TAB>relative<TAB>url` lines on stdin and fetches each object
# into the target directory, 8 at a time; python3 where the image has it,
# curl otherwise. Errors name the file and the HTTP status, never the URL.
# The controller already refused names that leave the target; the node checks
# again before fetching anything, where its symlinks can be seen, and exits
# FETCH_REFUSED_EXIT having written nothing if one would.
_FETCH_PY = r"""
import concurrent.futures, os, sys, urllib.request, urllib.error
target = sys.argv[1]
jobs = [line.rstrip("\n").split("\t", 2) for line in sys.stdin if line.strip()]
root = os.path.realpath(target)
def place(rel):
    if not rel:
        return target if len(jobs) == 1 else None
    parts = rel.split("/")
    if (rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or c == "\x7f" for c in rel)):
        return None
    path = os.path.realpath(os.path.join(root, rel))
    return path if path != root and os.path.commonpath([root, path]) == root else None
places = [place(rel) for _, rel, _ in jobs]
refused = [rel for (_, rel, _), path in zip(jobs, places) if path is None]
for rel in refused[:10]:
    print(f"refusing {rel!r}: it would be written outside {target}", file=sys.stderr)
if refused:
    sys.exit(%(refused)d)
def fetch(job, path):
    mode, rel, url = job
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for attempt in range(4):
        try:
            part = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(part, "wb") as out, urllib.request.urlopen(url, timeout=120) as response:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            os.replace(path + ".part", path)
            os.chmod(path, int(mode, 8))
            return None
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500:
                break
        except OSError as exc:
            error = type(exc).__name__
    return f"{rel or os.path.basename(path)}: {error}"
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    failures = [f for f in pool.map(fetch, jobs, places) if f]
for failure in failures[:10]:
    print("cannot fetch " + failure, file=sys.stderr)
sys.exit(1 if failures else 0)
""" % {"refused": FETCH_REFUSED_EXIT}

# Lines are split by hand: with IFS=<tab>, `read` would merge the two tabs
# around an empty relative path. `realpath -m` (GNU) sees symlinks; where it
# is missing, only the names are checked.
_FETCH_SH = r"""
T={target}
if command -v python3 >/dev/null 2>&1; then exec python3 -c {py} "$T"; fi
tab="$(printf '\t')"
list="$(cat)"
if base="$(realpath -m -- "$T" 2>/dev/null)"; then resolve=1; base="${{base%/}}"; else resolve=0; fi
inside() {{
  case "$1" in /*|*\\*|*//*|./*|*/./*|*/.|.|../*|*/../*|*/..|..|*[[:cntrl:]]*) return 1 ;; esac
  [ "$resolve" = 1 ] || return 0
  r="$(realpath -m -- "$T/$1" 2>/dev/null)" || return 1
  case "$r" in "$base"/?*) return 0 ;; esac
  return 1
}}
n=0; single=0; refused=0
while IFS= read -r line; do
  case "$line" in *"$tab"*"$tab"*) ;; *) continue ;; esac
  rest="${{line#*"$tab"}}"; rel="${{rest%%"$tab"*}}"; n=$((n + 1))
  if [ -z "$rel" ]; then single=1
  elif ! inside "$rel"; then echo "refusing '$rel': it would be written outside $T" >&2; refused=1; fi
done <<LIST
$list
LIST
if [ "$single" = 1 ] && [ "$n" -gt 1 ]; then echo "refusing '': it would be written outside $T" >&2; refused=1; fi
[ "$refused" = 0 ] || exit {refused}
status=0
while IFS= read -r line; do
  case "$line" in *"$tab"*"$tab"*) ;; *) continue ;; esac
  mode="${{line%%"$tab"*}}"; rest="${{line#*"$tab"}}"; rel="${{rest%%"$tab"*}}"; url="${{rest#*"$tab"}}"
  [ -n "$url" ] || continue
  if [ -n "$rel" ]; then p="$T/$rel"; else p="$T"; fi
  mkdir -p "$(dirname "$p")"
  if curl -fsSL --path-as-is --retry 3 -o "$p" "$url" 2>/dev/null; then chmod "$mode" "$p"; else echo "cannot fetch ${{rel:-$p}}" >&2; status=1; fi
done <<LIST
$list
LIST
exit $status
"""


def fetch_command(target: str) -> str:
    """The node command that fetches `fetch_input(...)` objects into `target`
    (a directory; or the file itself for one object with relative path "")."""
    import shlex

    # "" is the login's home itself: "$T/$rel" must not become "/$rel".
    return _FETCH_SH.format(target=shlex.quote(target or "."), py=shlex.quote(_FETCH_PY),
                            refused=FETCH_REFUSED_EXIT)


def fetch_input(objects: list[SignedObject]) -> str:
    return "".join(f"{obj.mode:o}\t{obj.relative}\t{obj.url}\n" for obj in objects)
