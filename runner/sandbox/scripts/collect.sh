# runner collector: runs in a fresh sandbox on the task's workspace after the task ended
# (also after a timeout or OOM kill). Commits what was left uncommitted and writes an
# incremental bundle START..HEAD to /bundle. Git runs here, never on the host, because the
# task controls this repository's config, hooks and attributes.
set -eu
command -v git >/dev/null || { echo "runner-collect: git is not installed in the image" >&2; exit 120; }
cd /work
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0 \
        -c commit.gpgSign=false -c core.autocrlf=false "$@"; }
g add -A .
if ! g diff --cached --quiet; then
    g commit --quiet --no-verify -m "runner: work left uncommitted by task $RUNNER_TASK"
fi
head=$(g rev-parse --verify HEAD)
if [ "$(g rev-list --count "$RUNNER_START..$head")" -gt 0 ]; then
    g update-ref refs/runner-result "$head"
    g bundle create --quiet /bundle/task.bundle refs/runner-result "^$RUNNER_START"
fi
echo "$head" >/bundle/head
