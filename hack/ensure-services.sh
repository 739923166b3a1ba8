#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, trust auth for loopback) and Redis
# (127.0.0.1:6379) are up. On our machines both run before a session starts;
# on a fresh machine this installs them from Debian packages and starts them.
set -euo pipefail

pg_up()    { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { [[ "$( (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c5 <&3) 2>/dev/null)" == "+PONG" ]]; }

apt_updated=
apt_install() {
  [[ -n $apt_updated ]] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # name, check fn
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  echo "ensure-services: $1 did not come up" >&2; return 1
}

if ! pg_up; then
  echo "ensure-services: starting PostgreSQL" >&2
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # Tests connect over loopback as the postgres role without a password.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  wait_for PostgreSQL pg_up
fi

if ! redis_up; then
  echo "ensure-services: starting Redis" >&2
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi
# The test cluster's node (make test-cluster): containerd, runc, the CNI
# plugins, and iptables and conntrack for kube-proxy, from Debian's packages
# (no daemon is started here; the test runs its own containerd).
node_pkgs=()
command -v containerd >/dev/null || node_pkgs+=(containerd)
command -v runc >/dev/null || node_pkgs+=(runc)
[[ -x /usr/lib/cni/bridge ]] || node_pkgs+=(containernetworking-plugins)
command -v iptables >/dev/null || node_pkgs+=(iptables)
command -v conntrack >/dev/null || node_pkgs+=(conntrack)
if ((${#node_pkgs[@]})); then
  echo "ensure-services: installing ${node_pkgs[*]}" >&2
  apt_install "${node_pkgs[@]}"
fi
echo "ensure-services: PostgreSQL and Redis are up; containerd, runc, CNI plugins, iptables and conntrack installed" >&2
