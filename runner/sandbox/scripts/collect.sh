# runner collector: runs in a fresh sandbox on the task's workspace after the task ended
# (also after a timeout or OOM kill). Commits what was left uncommitted and writes an
# incremental bundle START..HEAD to /bundle/out.
#
# The task owns /work/.git: its config (filter drivers, fsmonitor, aliases, includes), hooks,
# info/attributes and index could all make git run the task's code here, where the bundle is
# written. So git never uses that directory as its own: it runs on a git dir of the
# collector's (no config but ours, no hooks) with /work as the work tree, reading the task's
# HEAD, refs and objects as data.
set -eu
command -v git >/dev/null || { echo "runner-collect: git is not installed in the image" >&2; exit 120; }
task=/work/.git
own=/bundle/git
out=/bundle/out
[ -d "$task" ] && [ ! -L "$task" ] || { echo "runner-collect: /work/.git is not a directory" >&2; exit 121; }
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_CONFIG_PARAMETERS GIT_EXEC_PATH GIT_TEMPLATE_DIR
rm -rf "$own" "$out"
mkdir -p "$out"
# The task's objects are named as the host's are: 64 hex digits is a SHA-256 repository.
format=sha1; [ "${#RUNNER_START}" -eq 64 ] && format=sha256
git init --quiet --bare --template= --object-format="$format" "$own"
git --git-dir="$own" config core.bare false
export GIT_DIR="$own" GIT_WORK_TREE=/work GIT_INDEX_FILE="$own/index"
printf '%s\n%s\n' "$task/objects" /objects >"$own/objects/info/alternates"
# Refs as data: plain files copied (symlinks copied as links, never followed out of /work).
cp -P "$task/HEAD" "$own/HEAD"
[ ! -f "$task/packed-refs" ] || cp -P "$task/packed-refs" "$own/packed-refs"
[ ! -d "$task/refs" ] || cp -RP "$task/refs" "$own/"
# The task's index saves rehashing the whole tree, but its stat data is only as good as git's
# one-second view of times: a same-size edit in the second an entry was written, its mtime
# set back, looks clean. The host lists every path whose nanosecond stamps moved since
# before the task (/runner/moved, NUL-separated): their entries go, so `git add -A` hashes
# them again. Without that list (a resumed run, Swarm) no entry's stat data is trusted: the
# index is dated 1 s after the epoch, which makes every entry "racily clean" to git, so each
# is compared by content (its flags, such as skip-worktree, are kept). A broken index is
# replaced by HEAD's tree.
moved=/runner/moved
if cp -P "$task/index" "$own/index" 2>/dev/null && git ls-files --stage >/dev/null 2>&1; then
    if [ -f "$moved" ]; then
        git update-index -z --force-remove --stdin <"$moved"
    else
        touch -d @1 "$own/index"
    fi
else
    rm -f "$own/index"
    git read-tree HEAD
fi
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0 \
        -c commit.gpgSign=false -c core.autocrlf=false -c core.symlinks=true "$@"; }
g add -A .
if ! g diff --cached --quiet; then
    g commit --quiet --no-verify -m "runner: work left uncommitted by task $RUNNER_TASK"
fi
head=$(g rev-parse --verify HEAD^{commit})
# Files git ignores are not collected: say how many, so the result can tell the user.
g ls-files --others --ignored --exclude-standard --directory | wc -l >"$out/ignored"
if [ "$(g rev-list --count "$RUNNER_START..$head")" -gt 0 ]; then
    g update-ref refs/runner-result "$head"
    g bundle create --quiet "$out/task.bundle" refs/runner-result "^$RUNNER_START"
fi
echo "$head" >"$out/head"
