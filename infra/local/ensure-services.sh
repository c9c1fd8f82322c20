#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ on this machine when one of them is not answering
# (commands from the machine's documentation). Safe to run when all are up.
set -uo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
# The AMQP port answering is not enough (a node stuck stopping keeps it open): ask the node too,
# with a hard timeout, since the CLI itself can hang on a wedged node.
rabbit_up() {
  (echo > /dev/tcp/127.0.0.1/5672) 2>/dev/null &&
    timeout -s KILL 20 rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1
}

wait_for() { # name, check, seconds
  local i; for ((i = 0; i < $3; i++)); do $2 && return 0; sleep 1; done
  echo "$1 did not come up" >&2; return 1
}

if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for PostgreSQL pg_up 60
fi
if ! redis_up; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_for Redis redis_up 30
fi
if ! rabbit_up; then
  echo "starting RabbitMQ"
  timeout -s KILL 60 rabbitmqctl start_app >/dev/null 2>&1 || true
  if ! wait_for RabbitMQ rabbit_up 20; then
    echo "RabbitMQ does not start cleanly: restarting the node"
    pkill -9 -f 'beam.smp.*rabbit' || true
    sleep 2
    rabbitmq-server -detached || true
    wait_for RabbitMQ rabbit_up 180
  fi
fi
exit 0
