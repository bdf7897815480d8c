# runner provision (Swarm backend): makes the task's workspace in its node-local volume at
# /work by fetching the start commit (and the history it needs) from the run's depot.
# Env: RUNNER_DEPOT (git:// URL of this sandbox's repo in the depot), RUNNER_START,
# RUNNER_BRANCH.
set -eu
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
format=sha1; [ "${#RUNNER_START}" -eq 64 ] && format=sha256
cd /work
find /work -mindepth 1 -maxdepth 1 -exec rm -rf {} +  # a volume left by an earlier try
git init --quiet --object-format="$format" --initial-branch="$RUNNER_BRANCH" .
# The depot is a service of the run that may still be starting: a few tries, bounded.
n=0
until git fetch --quiet --no-tags "$RUNNER_DEPOT" refs/heads/start; do
    n=$((n + 1))
    [ "$n" -lt 30 ] || { echo "runner-provision: the depot did not answer" >&2; exit 1; }
    sleep 1
done
got=$(git rev-parse --verify FETCH_HEAD^{commit})
[ "$got" = "$RUNNER_START" ] || { echo "runner-provision: depot gave $got, not $RUNNER_START" >&2; exit 1; }
git update-ref "refs/heads/$RUNNER_BRANCH" "$got"
git reset --hard --quiet "$got"
rm -f .git/FETCH_HEAD
# The run's shared directory (read-only at /shared in the task), written here at /cache.
if [ -n "${RUNNER_WITH_SHARED:-}" ]; then
    find /cache -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    git init --quiet --bare --template= --object-format="$format" /tmp/shared.git
    git --git-dir=/tmp/shared.git fetch --quiet --no-tags "$RUNNER_DEPOT" refs/heads/shared
    git --git-dir=/tmp/shared.git archive FETCH_HEAD | tar -x -C /cache
    rm -rf /tmp/shared.git
fi
