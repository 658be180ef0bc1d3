#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, broker+controller in one JVM)
# for Herald's integration tests. No Docker needed: the broker jars come from
# Maven Central (via deploy/kafka/pom.xml) and are cached.
#
#   broker.sh start     resolve jars (once), format fresh storage, start, wait until ready
#   broker.sh stop      stop the broker started by this script and delete its data
#   broker.sh status    say whether it is running (exit 0 if so, 1 if not)
#   broker.sh brokers   print the bootstrap address, for HERALD_TEST_KAFKA_BROKERS
#
# To restart a broker with its topics, offsets and transactions intact (a
# test of what clients do while the broker is away), set
# HERALD_KAFKA_KEEP_DATA=1 for both commands: `stop` then keeps the data,
# and `start` runs the broker on the data it finds (formatting only when
# there is none). Keep the same ports: the controller's address is part of
# the formatted storage.
#
# Environment (all optional):
#   HERALD_KAFKA_PORT             client (PLAINTEXT) port          default 19092
#   HERALD_KAFKA_CONTROLLER_PORT  KRaft controller port            default 19093
#   HERALD_KAFKA_CACHE            jar cache + run state directory  default <repo>/.cache/kafka
#   HERALD_KAFKA_VERSION          Apache Kafka version (4.x)       default 4.2.1
#   HERALD_KAFKA_HEAP             broker max heap                  default 768m
#   HERALD_KAFKA_START_TIMEOUT    seconds to wait for readiness    default 90
#   HERALD_KAFKA_JVM_OPTS         extra JVM options for the broker (word-split)
#   HERALD_KAFKA_KEEP_DATA        1: stop keeps the data, start reuses it  default 0
#   JAVA_HOME                     used if set, else `java` on PATH (Java 17+ required)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

KAFKA_VERSION="${HERALD_KAFKA_VERSION:-4.2.1}" # keep in sync with <kafka.version> in pom.xml
PORT="${HERALD_KAFKA_PORT:-19092}"
CTRL_PORT="${HERALD_KAFKA_CONTROLLER_PORT:-19093}"
CACHE_DIR="${HERALD_KAFKA_CACHE:-$REPO_ROOT/.cache/kafka}"
# Absolute, so the pid/props paths (and the broker command line) don't depend on cwd.
[[ "$CACHE_DIR" == /* ]] || CACHE_DIR="$PWD/$CACHE_DIR"
HEAP="${HERALD_KAFKA_HEAP:-768m}"
START_TIMEOUT="${HERALD_KAFKA_START_TIMEOUT:-90}"
read -r -a EXTRA_JVM_OPTS <<<"${HERALD_KAFKA_JVM_OPTS:-}"
KEEP_DATA="${HERALD_KAFKA_KEEP_DATA:-0}"
STOP_TIMEOUT=10

HOST=127.0.0.1
LIB_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
# Run state is per client port, so brokers on different ports can coexist.
RUN_DIR="$CACHE_DIR/run-$PORT"
PID_FILE="$RUN_DIR/broker.pid"
LOG_FILE="$RUN_DIR/broker.log"
PROPS_FILE="$RUN_DIR/server.properties"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.xml"
# Logged by kafka.server.KafkaRaftServer once the broker accepts requests.
READY_MARKER="Kafka Server started"

say() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

keep_data() { [[ "$KEEP_DATA" == 1 ]]; }

# Delete the broker's data, unless HERALD_KAFKA_KEEP_DATA=1 asks to keep it.
drop_data() {
  keep_data || rm -rf "$RUN_DIR"/data.*
}

# The data directory a kept broker left, if there is exactly one that was
# formatted (it holds meta.properties).
kept_data_dir() {
  local dirs=("$RUN_DIR"/data.*/meta.properties)
  [[ ${#dirs[@]} -eq 1 && -f "${dirs[0]}" ]] || return 1
  dirname "${dirs[0]}"
}

# Last lines of the broker log, for failure messages.
show_log_tail() {
  if [[ -s "$LOG_FILE" ]]; then
    echo "kafka: ---- last 40 lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
    echo "kafka: ---- end of log ----" >&2
  fi
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp,
# so no nc needed; timeout guards against a hung connect).
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# The pid from the pid file if that process is alive and is *our* broker
# (checked via its command line, so a recycled pid is never mistaken for it).
broker_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmd
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || ps -o args= -p "$pid" 2>/dev/null || true)"
  [[ "$cmd" == *kafka.Kafka*"$PROPS_FILE"* ]] || return 1
  echo "$pid"
}

check_ports() {
  local p
  for p in "$PORT" "$CTRL_PORT"; do
    if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
      die "invalid port '$p'"
    fi
  done
  [[ "$PORT" != "$CTRL_PORT" ]] || die "HERALD_KAFKA_PORT and HERALD_KAFKA_CONTROLLER_PORT are both $PORT"
}

find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found (set JAVA_HOME or put Java 17+ on PATH)"
  fi
  local spec
  spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk '$1 == "java.specification.version" {print $3}')"
  # Kafka 4 brokers need Java 17+; "1.8" style versions are older than that.
  if ! [[ "$spec" =~ ^[0-9]+$ ]] || ((spec < 17)); then
    die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is Java '${spec:-unknown}'"
  fi
}

# Copy the broker's runtime classpath into $LIB_DIR, once per Kafka version.
# The .complete marker is written last, so an interrupted download is redone.
resolve_jars() {
  [[ -f "$LIB_DIR/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven is needed once to fetch the Kafka $KAFKA_VERSION jars into $LIB_DIR"
  say "resolving Apache Kafka $KAFKA_VERSION jars into $LIB_DIR (first run only) ..."
  local tmp="$LIB_DIR.tmp.$$" out
  rm -rf "$tmp"
  mkdir -p "$tmp"
  out="$(mktemp)"
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -rf "$tmp" "$out"
    rmdir "$(dirname "$LIB_DIR")" 2>/dev/null || true
    die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (output above)"
  fi
  rm -f "$out"
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
  touch "$tmp/.complete"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
}

# Run a one-shot Kafka tool (e.g. the storage formatter) with quiet logging.
kafka_tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dherald.kafka.log.level=WARN \
    -cp "$LIB_DIR/*" "$@"
}

write_properties() {
  local data_dir="$1"
  cat >"$PROPS_FILE" <<EOF
# Generated by deploy/kafka/broker.sh; rewritten on every start.
# Single combined broker+controller KRaft node, for tests only.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CTRL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Dynamic quorum (KIP-853): the storage is formatted with --standalone, which
# makes this node the only voter.
controller.quorum.bootstrap.servers=$HOST:$CTRL_PORT
log.dirs=$data_dir

# One broker: every internal topic must get by with a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
# Fewer internal partitions than the default 50: faster first group / transaction.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5

# Tests create their topics explicitly.
auto.create.topics.enable=false
num.partitions=1
# No 3 s wait before the first consumer group rebalance.
group.initial.rebalance.delay.ms=0
# KIP-848 groups take their session timeout from the broker, not the
# client: 10 s instead of 45 s, so that a test which kills a member sees
# its partitions move in test time.
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000

# Small thread pools: this is a 2-core test machine, not production.
num.network.threads=2
num.io.threads=4

# The rule evaluator begins a transaction as soon as the last one ends. Its
# first produce waits until the coordinator has finished the last one, and
# the broker retries that check every 20 ms by default; 2 ms takes a
# transaction from about 15 to about 8 ms on this machine (README,
# "Broker settings").
add.partitions.to.txn.retry.backoff.ms=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
}

# Kill the broker we just launched (used when a start fails half-way).
abort_start() {
  local pid="$1" msg="$2"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  drop_data
  show_log_tail
  die "$msg"
}

cmd_start() {
  check_ports
  mkdir -p "$CACHE_DIR"

  # Serialise concurrent starts (e.g. parallel `make test`) on this cache.
  # The broker must not inherit fd 9, or it would hold the lock forever.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.lock"
    flock 9
  fi

  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      say "broker already running on $HOST:$PORT (pid $pid)"
      return 0
    fi
    # Alive but not listening (hung or a previous start that never got ready):
    # start over rather than hand tests a broker that doesn't work.
    say "broker pid $pid is alive but not listening on $HOST:$PORT; restarting it"
    cmd_stop >/dev/null
  fi

  # Nothing of ours is running: clear stale state from a crash or a reboot.
  rm -f "$PID_FILE"
  drop_data

  local p
  for p in "$PORT" "$CTRL_PORT"; do
    if port_open "$p"; then
      die "port $HOST:$p is already in use by another process (not a broker started by this script); stop it or set HERALD_KAFKA_PORT / HERALD_KAFKA_CONTROLLER_PORT"
    fi
  done

  find_java
  resolve_jars

  mkdir -p "$RUN_DIR"
  local data_dir cluster_id out
  if keep_data && data_dir="$(kept_data_dir)"; then
    say "resuming on the kept data in $data_dir"
    write_properties "$data_dir"
  else
    rm -rf "$RUN_DIR"/data.*
    data_dir="$(mktemp -d "$RUN_DIR/data.XXXXXX")"
    write_properties "$data_dir"
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)" || die "could not generate a cluster id with kafka.tools.StorageTool"
    if ! out="$(kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS_FILE" --standalone 2>&1)"; then
      echo "$out" >&2
      die "formatting the broker storage in $data_dir failed (output above)"
    fi
  fi

  # nohup: survive the shell that ran `start` (make runs each recipe line in
  # its own shell). The broker's stdout/stderr, where log4j2 writes, go to the log.
  nohup "$JAVA" -Xms256m -Xmx"$HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true ${EXTRA_JVM_OPTS[@]+"${EXTRA_JVM_OPTS[@]}"} \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dherald.kafka.log.level=INFO \
    -cp "$LIB_DIR/*" kafka.Kafka "$PROPS_FILE" \
    </dev/null >"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  # Ready = the client port accepts connections AND the broker logged that it
  # finished starting (the port opens a little before the broker can serve).
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      abort_start "$pid" "broker process $pid exited during startup (log: $LOG_FILE)"
    fi
    if grep -q "$READY_MARKER" "$LOG_FILE" 2>/dev/null && port_open "$PORT"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      abort_start "$pid" "broker not ready after ${START_TIMEOUT}s (log: $LOG_FILE); killed it"
    fi
    sleep 0.25
  done
  say "broker ready on $HOST:$PORT (pid $pid)"
}

cmd_stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    drop_data
    say "no broker running on $HOST:$PORT (started by this script)"
    return 0
  fi

  # TERM lets Kafka shut down cleanly; KILL if it takes longer than STOP_TIMEOUT.
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker pid $pid did not exit within ${STOP_TIMEOUT}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi

  rm -f "$PID_FILE"
  # The data is throwaway (unless kept); the log and server.properties stay
  # for post-mortems.
  drop_data
  if keep_data; then
    say "broker stopped (pid $pid); its data is kept"
  else
    say "broker stopped (pid $pid)"
  fi
}

cmd_status() {
  local pid
  if pid="$(broker_pid)" && port_open "$PORT"; then
    say "broker running on $HOST:$PORT (pid $pid)"
  else
    say "no broker running on $HOST:$PORT (started by this script)"
    return 1
  fi
}

usage() {
  sed -n '2,28s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  brokers) echo "$HOST:$PORT" ;;
  *) usage ;;
esac
