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
src=cgroup
if [ -z "$cpu" ] && [ -z "$mem" ]; then
    # No cgroup files inside (gVisor mounts none): the task's CPU from the shell's `times`,
    # whose second line is its children's user and system time, e.g. "0m0.750000s 0m0.080s".
    src=times
    ns() {  # 1m2.345s -> nanoseconds; nothing for another shape (shells print times apart)
        [ -n "$1" ] || return
        m=${1%%m*}; s=${1#*m}; s=${s%s}; i=${s%.*}; f=${s#*.}
        [ "$f" = "$s" ] && f=0
        f="${f}000000000"; f=${f%"${f#?????????}"}
        case "$m$i$f" in *[!0-9]*) return ;; esac
        while [ "${#m}" -gt 1 ] && [ "${m#0}" != "$m" ]; do m=${m#0}; done  # 08 is not octal
        while [ "${#i}" -gt 1 ] && [ "${i#0}" != "$i" ]; do i=${i#0}; done
        echo $(( (m * 60 + i) * 1000000000 + 1$f - 1000000000 ))  # 1$f: no octal
    }
    # Into a file, not $(times): a command substitution is a subshell, with no children.
    if times >/tmp/.runner-times 2>/dev/null && { read -r _ _ && read -r a b; } </tmp/.runner-times
    then
        u=$(ns "$a"); k=$(ns "$b")
        [ -n "$u" ] && [ -n "$k" ] && cpu=$((u + k))
    fi
fi
echo "##runner-metrics rc=$rc cpu_ns=${cpu:-} mem_bytes=${mem:-} src=$src" >&2
exit $rc
