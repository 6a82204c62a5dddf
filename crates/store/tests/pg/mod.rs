//! A throwaway PostgreSQL server for the tests: `initdb` in a temporary directory, started with
//! `pg_ctl` on a free port of 127.0.0.1 (and a unix socket in the same directory), stopped when
//! dropped. PostgreSQL refuses to run as root, so as root every command runs as the `postgres`
//! user through `runuser`.
//!
//! Where PostgreSQL is not installed the tests say SKIPPED and pass, except under `CI=true`,
//! where they fail: CI must run them (`.ci/run` installs PostgreSQL).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A running server in its own temporary directory.
pub(crate) struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    options: Vec<String>,
}

/// Where `initdb`, `pg_ctl` and `pg_dump` are: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` that has them.
fn find_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Says SKIPPED and returns `None`, or fails under CI.
fn absent(test: &str, why: &str) -> Option<PgServer> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: PostgreSQL is required under CI=true, but {why}");
    }
    eprintln!("SKIPPED {test}: {why} (install PostgreSQL to run it; CI=true makes this a failure)");
    None
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn is_root() -> bool {
    // Our own /proc entry is owned by our effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "there is no postgres user to run PostgreSQL as"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

impl PgServer {
    /// Starts a server with the default settings, or says SKIPPED.
    pub(crate) fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[], &[])
    }

    /// Starts a server with extra `-c name=value` settings and these files (name, contents,
    /// permissions) written into its data directory first (`pg_hba.conf`, certificates).
    pub(crate) fn start_with(
        test: &str,
        settings: &[(&str, &str)],
        files: &[(&str, &[u8], u32)],
    ) -> Option<Self> {
        let Some(bin) = find_bin() else {
            return absent(
                test,
                "no /usr/lib/postgresql/*/bin/initdb (or $PG_BIN) was found",
            );
        };
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("domicile-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut options = vec![
            format!("-k {}", dir.path().display()),
            "-h 127.0.0.1".to_owned(),
            format!("-p {}", free_port()),
            // The crash tests rely on these: a commit returns once its WAL is on disk.
            "-c fsync=on".to_owned(),
            "-c synchronous_commit=on".to_owned(),
            "-c shared_buffers=32MB".to_owned(),
            "-c max_connections=40".to_owned(),
        ];
        for (name, value) in settings {
            options.push(format!("-c {name}={value}"));
        }
        let port = options[2][3..].parse().unwrap();
        let server = PgServer {
            dir,
            bin,
            port,
            as_postgres,
            options,
        };
        let data = server.data();
        server.run_ok(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
                "--no-sync",
            ],
        );
        for (name, contents, mode) in files {
            server.write_owned(&data.join(name), contents, *mode);
        }
        server.start_again();
        Some(server)
    }

    /// The temporary directory (owned by the server's user), for files the server must read.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a file the server's user owns, with these permissions.
    pub(crate) fn write_owned(&self, path: &Path, contents: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        if self.as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// The TCP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A URL for the `postgres` database over TCP.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port
        )
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        out
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub(crate) fn start_again(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let options = self.options.join(" ");
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "120",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, without a checkpoint, as
    /// after a power cut; the next start recovers from the WAL.
    pub(crate) fn stop_immediate(&self) {
        let data = self.data();
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// SIGKILL to the postmaster and every one of its children at once, then waits for them
    /// to be gone.
    pub(crate) fn sigkill(&self) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let kill = |signal: &str, pids: &[i32]| {
            let status = Command::new("kill")
                .arg(signal)
                .args(pids.iter().map(|p| p.to_string()))
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} {pids:?}");
        };
        // Frozen first, so it forks no new backend between listing its children and the kill.
        kill("-STOP", &[postmaster]);
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        kill("-KILL", &pids);
        // Gone means reaped: a zombie postmaster still "holds" postmaster.pid for the next start.
        let started = Instant::now();
        while pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server's processes outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run_ok(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The whole `postgres` database as `pg_dump` writes it (plain SQL).
    pub(crate) fn pg_dump(&self) -> Vec<u8> {
        let port = self.port.to_string();
        self.run_ok(
            "pg_dump",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "postgres"],
        )
        .stdout
    }
}

/// The processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, then the parent's pid.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            )
            .output();
    }
}
