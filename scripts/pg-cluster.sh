# PostgreSQL with PostGIS for the comparison scripts, sourced by them: found or
# installed from Debian, and a cluster of the script's own in a folder it names.
# PostgreSQL will not run as root: when we are root it runs as `postgres`.

# Sets `pgbin` to the newest installed server's programs, installing PostgreSQL
# 15 with PostGIS first if either is missing.
pg_find_or_install() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$pgbin" ] || ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    printf '== %s\n' "installing PostgreSQL and PostGIS (apt-get)" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-15-postgis-3
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# pg_start DIR PORT [SERVER OPTION...]: a new cluster in DIR/pg, its socket in DIR.
pg_start() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir/pg" && chown postgres "$dir/pg" "$dir" 2>/dev/null || true
  as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres --auth=trust >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -o "-p $port -k $dir $*" start >/dev/null
}

# pg_stop DIR: stops the cluster pg_start made there, if it runs.
pg_stop() {
  [ -f "$1/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$1/pg" -m fast stop >/dev/null
}
