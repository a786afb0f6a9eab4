# Sourced by kafka.sh and registry.sh: how the dev services find, probe and stop their JVMs.
# The caller defines log and die. A pid file alone proves nothing (pids are reused), so a
# process counts as ours only while its command line carries the caller's own arguments.

# True if $1 is a live java process whose arguments include $2, $3, ... one after the other.
java_pid_has_args() {
    local pid="$1" state i j
    shift
    local -a args=()
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
    mapfile -d '' args <"/proc/$pid/cmdline" 2>/dev/null || return 1
    ((${#args[@]} > 1)) && [[ "${args[0]##*/}" == java ]] || return 1
    for ((i = 1; i + $# <= ${#args[@]}; i++)); do
        for ((j = 0; j < $#; j++)); do
            [[ "${args[i + j]}" == "${@:j+1:1}" ]] || continue 2
        done
        return 0
    done
    return 1
}

# True while $1 is the setsid a service was launched with and has not yet become its java: a
# process checked at once after `setsid java ... &` may not have exec'd yet.
pid_is_launching() {
    local -a args=()
    [[ -r "/proc/$1/cmdline" ]] || return 1
    mapfile -d '' args <"/proc/$1/cmdline" 2>/dev/null || return 1
    ((${#args[@]} > 0)) && [[ "${args[0]##*/}" == setsid ]]
}

# The pid in file $1 if the predicate $2 holds for it.
pid_from_file() {
    local file="$1" predicate="$2" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    "$predicate" "$pid" || return 1
    echo "$pid"
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# SIGTERM to pid $1, SIGKILL after $3 seconds while the predicate $2 still holds; $4 names it.
stop_java_pid() {
    local pid="$1" predicate="$2" stop_timeout="$3" what="$4" deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$(($(date +%s) + stop_timeout))
    while "$predicate" "$pid" && (($(date +%s) < deadline)); do
        sleep 0.2
    done
    "$predicate" "$pid" || return 0
    log "$what $pid did not stop within ${stop_timeout}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$(($(date +%s) + 10))
    while "$predicate" "$pid" && (($(date +%s) < deadline)); do
        sleep 0.2
    done
    ! "$predicate" "$pid" || die "$what $pid survived SIGKILL"
}
