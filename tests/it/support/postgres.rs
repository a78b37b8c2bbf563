//! A PostgreSQL server (Debian's `postgresql` package, 15 or newer) for the tests of this binary:
//! a fresh cluster in a temp directory, listening only on 127.0.0.1 (and a Unix socket in that
//! directory), trust authentication, no fsync. As root (initdb and postgres refuse to run as
//! root) it runs as the `postgres` user through `setpriv`. A shell watchdog stops the server and
//! removes the directory when the test process exits (statics are never dropped), like moto's.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binaries of the newest PostgreSQL installed (`PG_BIN` overrides).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((v, bin)) if v >= 15 => bin,
        _ => panic!(
            "PostgreSQL 15 or newer is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make test` (scripts/setup.sh installs it) or `apt-get install postgresql`, or set PG_BIN"
        ),
    }
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The shared server, started on first use.
pub fn server() -> &'static Postgres {
    SERVER.get_or_init(|| {
        let bin = bin_dir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("shoplake-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // As root, run the server as `postgres` (it owns the directory); else as ourselves.
        let run_as = if output("id", &["-u"]) == "0" {
            let (uid, gid) = (output("id", &["-u", "postgres"]), output("id", &["-g", "postgres"]));
            assert!(!uid.is_empty(), "running as root, but there is no `postgres` user to run PostgreSQL as (Debian's postgresql package creates it)");
            Command::new("chown").args([&format!("{uid}:{gid}"), dir.to_str().unwrap()]).status().unwrap();
            format!("setpriv --reuid={uid} --regid={gid} --clear-groups")
        } else {
            String::new()
        };
        let script = r#"
            $RUN "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 || exit 1
            $RUN "$BIN/postgres" -D "$DIR/data" -h 127.0.0.1 -p "$PORT" -k "$DIR" \
                -c fsync=off -c full_page_writes=off -c synchronous_commit=off >"$DIR/server.log" 2>&1 &
            pg=$!
            trap 'kill -INT $pg 2>/dev/null; wait $pg; rm -rf "$DIR"' EXIT
            trap 'exit 0' INT TERM
            while kill -0 "$OWNER" 2>/dev/null && kill -0 "$pg" 2>/dev/null; do sleep 0.5; done
        "#;
        // Not waited on by design: the watchdog outlives this call and exits with the test process.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", script])
            .env("RUN", run_as)
            .env("BIN", &bin)
            .env("DIR", &dir)
            .env("PORT", port.to_string())
            .env("OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start; see {} and {}",
                dir.join("initdb.log").display(),
                dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Postgres { port, dir }
    })
}

impl Postgres {
    /// The URL of one database on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A client of `database`, retried while the server is still starting up.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    return client;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "connecting to PostgreSQL: {e} (log in {})",
                    self.dir.display()
                ),
            }
        }
    }

    /// A new empty database named `name` (dropped first if a rerun left it); its URL.
    pub async fn fresh_database(&self, name: &str) -> String {
        let admin = self.client("postgres").await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }
}

/// The rows of a query, every value as text (NULL as `None`): exact, whatever the column type.
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}
