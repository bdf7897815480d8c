# runner collect (Swarm backend): the collector's own commit of what the task left
# (collect.sh, unchanged), then its result and RUNNER_OUT pushed to the task's repo in the
# run's depot, which takes only refs/heads/result and refs/heads/out, each once.
# Env: RUNNER_DEPOT, RUNNER_START, RUNNER_TASK, RUNNER_MAX_OUT.
set -eu
sh /runner/collect.sh
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_DIR=/bundle/git
unset GIT_WORK_TREE GIT_INDEX_FILE
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0 \
        -c commit.gpgSign=false -c core.autocrlf=false -c core.symlinks=true "$@"; }
head=$(cat /bundle/out/head)
ignored=$(cat /bundle/out/ignored)
# RUNNER_OUT as a commit of its own (files as data; the host keeps regular files only).
size=$(du -sb /out | cut -f1)
if [ "$size" -le "$RUNNER_MAX_OUT" ]; then
    GIT_WORK_TREE=/out GIT_INDEX_FILE=/bundle/out.index g add -A --force .
    tree=$(GIT_INDEX_FILE=/bundle/out.index g write-tree)
    note="ok"
else
    tree=$(g mktree </dev/null)
    note="too-large $size"
fi
out=$(printf 'ignored %s\nout %s\n' "$ignored" "$note" | g commit-tree "$tree")
g push --quiet "$RUNNER_DEPOT" "$head:refs/heads/result" "$out:refs/heads/out"
echo "$head"
