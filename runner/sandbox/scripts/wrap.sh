# runner task wrapper (POSIX sh: user images may have no bash). Runs the task script, then
# reports what the container's cgroup measured, which is gone once the container exits.
mkdir -p "$HOME" 2>/dev/null
cd /work || exit 125
/bin/sh -e /runner/task.sh </dev/null
rc=$?

value() { [ -r "$1" ] && read -r v _rest <"$1" && echo "$v"; }
cpu=$(value /sys/fs/cgroup/cpuacct/cpuacct.usage)
[ -n "$cpu" ] || cpu=$(value /sys/fs/cgroup/cpu,cpuacct/cpuacct.usage)
mem=$(value /sys/fs/cgroup/memory/memory.max_usage_in_bytes)
if [ -z "$cpu" ] && [ -r /sys/fs/cgroup/cpu.stat ]; then  # cgroup v2
    while read -r key val; do [ "$key" = usage_usec ] && cpu=$((val * 1000)); done </sys/fs/cgroup/cpu.stat
    mem=$(value /sys/fs/cgroup/memory.peak)
fi
echo "##runner-metrics rc=$rc cpu_ns=${cpu:-} mem_bytes=${mem:-}" >&2
exit $rc
