#!/usr/bin/env bash
# A real single-node SLURM cluster for the tests (tests/test_slurm.py) and bench/bench_slurm.py.
#
#   bash tests/slurm/cluster.sh install   # as root: Debian's slurm-wlm, slurmdbd, munge, MariaDB
#   bash tests/slurm/cluster.sh start     # write the configs, start the daemons, wait for the node
#   source "${TADA_SLURM_DIR:-${TMPDIR:-/tmp}/tada-slurm}/env.sh"   # sinfo, sbatch, sacct, ...
#   bash tests/slurm/cluster.sh status
#   bash tests/slurm/cluster.sh stop      # stop exactly the daemons `start` started
#
# Everything lives in one state directory (TADA_SLURM_DIR, default ${TMPDIR:-/tmp}/tada-slurm):
# slurm.conf, slurmdbd.conf, the munge key and socket, the database files, spool/state
# directories, logs/ and pids/. Nothing under /etc is changed, and no system service is started
# or stopped. The daemons run as root (the tests run as root).
#
# Accounting: the SLURM executor plugin polls job states with
# `sacct -X --parsable2 --noheader --format=JobIdRaw,State --name <run id>`. SLURM 22.05's sacct
# answers from slurmdbd only: with AccountingStorageType=accounting_storage/none it stops with
# "Slurm accounting storage is disabled" (jobcomp/filetxt is read by `sacct --completion` only,
# which the plugin does not pass). So the cluster runs slurmdbd, on a private MariaDB server
# (own datadir and socket, listening on 127.0.0.1 only).
#
# Ports (override if taken): TADA_SLURM_CTLD_PORT (16817), TADA_SLURM_SLURMD_PORT (16818),
# TADA_SLURM_DBD_PORT (16819), TADA_SLURM_DB_PORT (16820, MariaDB on 127.0.0.1 only).
# TADA_SLURM_TIMEOUT: seconds to wait for each daemon (60).
set -euo pipefail

DIR="${TADA_SLURM_DIR:-${TMPDIR:-/tmp}/tada-slurm}"
CTLD_PORT="${TADA_SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${TADA_SLURM_SLURMD_PORT:-16818}"
DBD_PORT="${TADA_SLURM_DBD_PORT:-16819}"
DB_PORT="${TADA_SLURM_DB_PORT:-16820}"
TIMEOUT="${TADA_SLURM_TIMEOUT:-60}"
CLUSTER="tada"
PARTITION="debug"
# The daemons, in start order (stop runs the list backwards).
DAEMONS=(mariadbd munged slurmdbd slurmctld slurmd)

die() { echo "cluster.sh: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*" >&2; }

# The log of daemon $1 (what it prints on stdout/stderr goes to the same name + .out).
log_of() { echo "$DIR/logs/$1.log"; }

node_name() {
    local name
    name="$(hostname -s 2>/dev/null || true)"
    if [[ -z "$name" ]] || ! getent hosts "$name" >/dev/null 2>&1; then
        name=localhost
    fi
    echo "$name"
}

# This machine's memory in MB, less a margin (10%, at least 512 MB) for the OS and the daemons:
# slurmd marks the node invalid when RealMemory exceeds what it finds.
real_memory_mb() {
    local kb mb margin
    kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    mb=$((kb / 1024))
    margin=$((mb / 10))
    ((margin < 512)) && margin=512
    echo $((mb - margin))
}

mysql_bin() {
    command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd
}

PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

cmd_install() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "already installed: slurm $(dpkg-query -W -f='${Version}' slurm-client)"
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "install needs root (apt-get): missing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # --no-install-recommends: slurm-wlm recommends every plugin's -dev package.
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
    # The packages' own services (if the init system started them) are left alone: the test
    # cluster uses its own ports, sockets and files and does not talk to them.
    say "installed: slurm $(dpkg-query -W -f='${Version}' slurm-client)"
}

write_configs() {
    local node cpus mem
    node="$(node_name)"
    cpus="$(nproc)"
    mem="$(real_memory_mb)"
    mkdir -p "$DIR"/{logs,pids,munge,spool/slurmd,state,mysql}
    chmod 755 "$DIR" "$DIR/munge"

    cat >"$DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/pids/slurmctld.pidfile
SlurmdPidFile=$DIR/pids/slurmd.pidfile
SlurmctldLogFile=$(log_of slurmctld)
SlurmdLogFile=$(log_of slurmd)
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/plugstack.conf
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 minutes (sacct keeps them for good).
MinJobAge=300
# Accounting through slurmdbd, so that sacct lists running and finished jobs.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# For accounting_storage/slurmdbd this names the munge socket used to talk to slurmdbd.
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$DIR/plugstack.conf"

    cat >"$DIR/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$(log_of slurmdbd)
PidFile=$DIR/pids/slurmdbd.pidfile
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
EOF
    # slurmdbd refuses a config that others can read (it holds the DB password).
    chmod 600 "$DIR/slurmdbd.conf"

    cat >"$DIR/my.cnf" <<EOF
[mysqld]
datadir=$DIR/mysql
socket=$DIR/mysqld.sock
pid-file=$DIR/pids/mariadbd.pidfile
log-error=$(log_of mariadbd)
bind-address=127.0.0.1
port=$DB_PORT
user=root
# Small: a test database. (slurmdbd logs "Database settings not recommended values" for
# these; its recommendations, 128M and 64M, are for production.)
innodb_buffer_pool_size=32M
innodb_log_file_size=8M
innodb_lock_wait_timeout=900
EOF

    cat >"$DIR/env.sh" <<EOF
# Source this to use the test cluster's client commands (sinfo, sbatch, sacct, squeue, ...).
# Munge clients inside SLURM take the munge socket from AuthInfo in slurm.conf.
export SLURM_CONF="$DIR/slurm.conf"
export TADA_SLURM_DIR="$DIR"
export TADA_SLURM_PARTITION="$PARTITION"
export TADA_SLURM_CLUSTER="$CLUSTER"
EOF

    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$DIR/munge/munge.key"
}

# Is daemon $1 running under the PID `start` recorded? (The process name is checked too, so a
# PID reused by another program after the daemon died is never taken for it, nor killed.)
pid_alive() {
    local f="$DIR/pids/$1.pid" pid comm
    [[ -s "$f" ]] || return 1
    pid="$(cat "$f")"
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "$1"* ]]
}

# launch NAME CMD...: start a daemon in the foreground mode of its own, detached into its own
# session, output to its log; its PID goes to pids/NAME.pid.
launch() {
    local name="$1"
    shift
    if pid_alive "$name"; then
        say "$name already running (pid $(cat "$DIR/pids/$name.pid"))"
        return
    fi
    setsid "$@" >>"$(log_of "$name").out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name.pid"
}

# wait_for NAME DESCRIPTION CMD...: retry CMD until it succeeds; fail with the daemon's logs.
wait_for() {
    local name="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        # (kill -0, not pid_alive: just after the launch the process may not have exec'd yet)
        if ! kill -0 "$(cat "$DIR/pids/$name.pid")" 2>/dev/null; then
            show_logs "$name"
            die "$name exited before $what; see $(log_of "$name") and $(log_of "$name").out"
        fi
        if ((SECONDS >= deadline)); then
            show_logs "$name"
            die "timed out after ${TIMEOUT}s waiting for $what; see $(log_of "$name") and $(log_of "$name").out"
        fi
        sleep 0.5
    done
}

show_logs() {
    local f
    for f in "$(log_of "$1")" "$(log_of "$1").out"; do
        [[ -s "$f" ]] && { echo "--- $f (last lines)" >&2; tail -n 20 "$f" >&2; }
    done
    return 0
}

mysql_q() {
    mysql --no-defaults --socket="$DIR/mysqld.sock" -u root "$@"
}

node_idle() {
    local state
    state="$(sinfo --noheader --nodes="$(node_name)" --format=%T 2>/dev/null | head -n1)"
    [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]
}

cmd_start() {
    for bin in slurmctld slurmd slurmdbd munged sinfo sacctmgr; do
        command -v "$bin" >/dev/null || die "$bin not found: run 'bash $0 install' (as root) first"
    done
    [[ -x "$(mysql_bin)" ]] || die "mariadbd not found: run 'bash $0 install' (as root) first"
    write_configs
    export SLURM_CONF="$DIR/slurm.conf"

    # 1. MariaDB for slurmdbd: a private server, on a socket in the state directory.
    if [[ ! -d "$DIR/mysql/mysql" ]]; then
        mariadb-install-db --defaults-file="$DIR/my.cnf" --auth-root-authentication-method=normal \
            --skip-test-db >"$(log_of mariadb-install-db)" 2>&1 \
            || { show_logs mariadb-install-db; die "mariadb-install-db failed; see $(log_of mariadb-install-db)"; }
    fi
    launch mariadbd "$(mysql_bin)" --defaults-file="$DIR/my.cnf"
    wait_for mariadbd "MariaDB to accept connections" mysql_q -e "SELECT 1"
    mysql_q -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || die "could not create the slurm database user; see $(log_of mariadbd)"

    # 2. munged, with its own key, socket, pid and seed files.
    launch munged munged --foreground --force \
        --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/pids/munged.pidfile" --seed-file="$DIR/munge/munge.seed" \
        --log-file="$(log_of munged)"
    wait_for munged "munged's socket" bash -c "munge --socket='$DIR/munge/munge.socket' -n | unmunge --socket='$DIR/munge/munge.socket'"

    # 3. slurmdbd, then the cluster's entry in the accounting database.
    # (slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF.)
    launch slurmdbd slurmdbd -D
    wait_for slurmdbd "slurmdbd to answer" sacctmgr --immediate list cluster
    if ! sacctmgr --noheader --parsable2 list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr --immediate add cluster "$CLUSTER" >/dev/null
    fi

    # 4. slurmctld and slurmd.
    launch slurmctld slurmctld -D -f "$DIR/slurm.conf"
    wait_for slurmctld "slurmctld to answer" scontrol ping
    launch slurmd slurmd -D -f "$DIR/slurm.conf" -N "$(node_name)"
    wait_for slurmd "node $(node_name) to be idle in sinfo" node_idle
    say "cluster '$CLUSTER' up: partition '$PARTITION', node $(node_name) ($(nproc) CPUs, $(real_memory_mb) MB); source $DIR/env.sh"
}

cmd_stop() {
    local i name pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name="${DAEMONS[i]}"
        [[ -s "$DIR/pids/$name.pid" ]] || continue
        pid="$(cat "$DIR/pids/$name.pid")"
        if pid_alive "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do
                pid_alive "$name" || break
                sleep 0.25
            done
            if pid_alive "$name"; then
                say "$name (pid $pid) did not stop on SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$DIR/pids/$name.pid"
    done
    say "stopped"
}

cmd_status() {
    local name rc=0
    for name in "${DAEMONS[@]}"; do
        if pid_alive "$name"; then
            echo "$name: running (pid $(cat "$DIR/pids/$name.pid"))"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    if [[ -f "$DIR/slurm.conf" ]]; then
        SLURM_CONF="$DIR/slurm.conf" sinfo 2>&1 || rc=1
    fi
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
