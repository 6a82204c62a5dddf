//! Crash-safe file operations, in one place.
//!
//! A hand-written "write to a temporary file, then rename" is a bug waiting for a power cut: it
//! forgets the directory fsync, shares a fixed `.tmp` name with a second process, or leaves the
//! file world-readable. Every file domicile writes outside its databases and logs (key files,
//! manifests, reports, approval books, model artifacts, witness state) goes through this crate,
//! after Tessera's `storage/posix/file_ops.go`:
//!
//! - [`write_private`]: replace a file atomically and durably, mode 0600.
//! - [`write_public`]: the same for public material (verifier keys), mode 0644.
//! - [`create_private`]: the same, but refuse if the file exists (private keys are never
//!   overwritten silently).
//! - [`read_optional`] / [`read_bounded`]: read a file that may be absent (and must be a regular
//!   file: state a program wrote), or that must not be larger than a bound (every input a user
//!   can hand us is bounded).
//! - [`read_line_bounded`]: the next line of a stream, bounded and UTF-8, refused by what is
//!   wrong with it, never by quoting it.
//! - [`check_regular`]: refuse a FIFO or device where a database file belongs, before a library
//!   opens it and blocks.
//! - [`append_synced`]: append and fdatasync.
//! - [`rename_synced`] / [`remove_synced`]: move a file into place, or remove one, durably.
//! - [`create_private_dir`]: `mkdir -p` with mode 0700, each new directory made durable.
//! - [`check_private`]: refuse a secret file that group or others can read or write, with an
//!   error that says how to fix it (as ssh does).
//!
//! Errors are [`FileError`]: the operation, the path and the OS error, so a caller can wrap it in
//! its own error type with `#[from]`.
//!
//! ```
//! use domicile_durable::{create_private, read_optional, write_private, check_private};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("keys/us/log.key");
//! create_private(&path, b"secret\n")?;
//! assert!(create_private(&path, b"other\n").is_err(), "never overwritten silently");
//! check_private(&path)?;
//! write_private(&path, b"rotated\n")?;
//! assert_eq!(read_optional(&path)?.as_deref(), Some(&b"rotated\n"[..]));
//! assert_eq!(read_optional(&dir.path().join("absent"))?, None);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every private file domicile writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of public files ([`write_public`]).
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of every private directory domicile creates.
pub const DIR_MODE: u32 = 0o700;

/// A file operation that failed: what was attempted, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The operating system refused or failed an operation.
    #[error("could not {op} {path}: {cause}")]
    Io {
        /// What was attempted (`create`, `write`, `sync`, `rename`, `read`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error, printed in the message (and so not also offered as a source).
        cause: io::Error,
    },
    /// [`create_private`] found the file already there.
    #[error("{path} already exists; refusing to overwrite it (move it aside, or pass --force where the command offers it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// [`read_bounded`] found a file larger than its bound.
    #[error("{path} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound, in bytes.
        limit: u64,
    },
    /// [`check_private`] found a secret file that group or others may read or write.
    #[error("{path} holds a secret but its mode is {mode:04o}, readable or writable by group or others; run `chmod 600 {path}` (or 700 for a directory) and try again")]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl FileError {
    /// An I/O failure of `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        FileError::Io {
            op,
            path: path.into(),
            cause,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::Exists { path }
            | FileError::TooLarge { path, .. }
            | FileError::NotPrivate { path, .. } => path,
        }
    }

    /// Whether the error means "the file was not there".
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound)
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary name beside `path`, unique to this process and call, so two processes (or two
/// threads) writing the same file never share a temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Makes the entries of `dir` durable (fsync of the directory itself).
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::io("sync", dir, e))
}

/// Creates `dir` and its missing parents with mode 0700, syncing each parent that gained an
/// entry. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(up)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FileError::io("create directory", dir, e)),
    }
}

/// Writes `bytes` to a fresh temporary file beside `path` and fsyncs it; the caller renames or
/// links it into place.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, FileError> {
    let tmp = temp_path(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| FileError::io("create", &tmp, e))
        .and_then(|mut f| {
            f.write_all(bytes)
                .map_err(|e| FileError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| FileError::io("sync", &tmp, e))
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces `path` with `bytes` atomically and durably, mode 0600: a crash leaves either the
/// old file or the new one, never a mix, and once this returns the new file survives a power
/// cut. Missing parent directories are created with mode 0700.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_private_unsynced_dir(path, bytes)?;
    sync_dir(parent(path))
}

/// Replaces `path` with `bytes` atomically and durably, like [`write_private`], but readable by
/// everyone (mode 0644): for public material meant to be handed out, such as a log's verifier
/// key or a signing key's public half.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_private(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(PUBLIC_FILE_MODE))
        .map_err(|e| FileError::io("set permissions of", path, e))
}

/// [`write_private`] without the final directory fsync, for callers that write many files into
/// a few directories and then call [`sync_dir`] once per directory.
pub fn write_private_unsynced_dir(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    create_private_dir(parent(path))?;
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FileError::io("rename", path, e)
    })
}

/// Moves a file another library wrote (a database created under a temporary name, say) to
/// `path` atomically, and makes the move durable: a crash leaves the file under one name or the
/// other, never under neither.
pub fn rename_synced(from: &Path, path: &Path) -> Result<(), FileError> {
    fs::rename(from, path).map_err(|e| FileError::io("rename", from, e))?;
    sync_dir(parent(path))
}

/// Removes `path` and makes the removal durable: a secret believed destroyed must not come back
/// after a power cut.
pub fn remove_synced(path: &Path) -> Result<(), FileError> {
    fs::remove_file(path).map_err(|e| FileError::io("remove", path, e))?;
    sync_dir(parent(path))
}

/// Creates `path` holding `bytes`, durably and with mode 0600, and fails with
/// [`FileError::Exists`] if it is already there: even when two processes race, exactly one
/// creates it and neither sees a partial file.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    create_private_dir(parent(path))?;
    let tmp = write_temp(path, bytes)?;
    // A hard link fails if the target exists, unlike rename: the atomic "create exclusively".
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(FileError::Exists {
            path: path.to_owned(),
        }),
        Err(e) => Err(FileError::io("create", path, e)),
    }
}

/// Reads `path`, or `None` if it does not exist.
///
/// What this reads is state a program wrote (manifests, journals, progress, signed state), so it
/// must be a regular file: a device, FIFO, socket or directory in its place (or a symbolic link
/// to one) is an error, checked before the file is opened, so that a FIFO cannot block the
/// open and `/dev/zero` cannot be read forever.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    check_regular(path)?;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::io("open", path, e)),
    };
    // Swapped for something else between the check and the open: checked again on the handle.
    let meta = file
        .metadata()
        .map_err(|e| FileError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    // The length is a hint; one no allocation can hold (a sparse file edited to claim a
    // terabyte) is an error, not an abort.
    let mut bytes = Vec::new();
    usize::try_from(meta.len())
        .ok()
        .and_then(|len| bytes.try_reserve_exact(len).ok())
        .ok_or_else(|| {
            FileError::io(
                "read",
                path,
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("{} bytes do not fit in memory", meta.len()),
                ),
            )
        })?;
    file.read_to_end(&mut bytes)
        .map_err(|e| FileError::io("read", path, e))?;
    Ok(Some(bytes))
}

/// Checks that `path` is a regular file, or absent, before a library opens it: a database file a
/// FIFO or device stands in for would block the open or the first read for ever. A symbolic
/// link to a regular file passes.
pub fn check_regular(path: &Path) -> Result<(), FileError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(not_regular(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io("inspect", path, e)),
    }
}

fn not_regular(path: &Path) -> FileError {
    FileError::io(
        "read",
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a device, FIFO, socket or directory is in its place)",
        ),
    )
}

/// Reads `path` as UTF-8 text, or `None` if it does not exist.
pub fn read_optional_string(path: &Path) -> Result<Option<String>, FileError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            FileError::io(
                "read",
                path,
                io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"),
            )
        }),
    }
}

/// Reads at most `limit` bytes from `path`; a larger file (or an endless one, such as a device)
/// is [`FileError::TooLarge`] and is not read further.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = File::open(path).map_err(|e| FileError::io("open", path, e))?;
    read_bounded_from(file, limit).map_err(|e| match e {
        BoundedReadError::Io(e) => FileError::io("read", path, e),
        BoundedReadError::TooLarge => FileError::TooLarge {
            path: path.to_owned(),
            limit,
        },
    })
}

/// Why [`read_bounded_from`] failed.
#[derive(Debug)]
pub enum BoundedReadError {
    /// The reader failed.
    Io(io::Error),
    /// The input is longer than the bound.
    TooLarge,
}

/// Reads at most `limit` bytes from any reader (standard input, a socket); one byte more is
/// [`BoundedReadError::TooLarge`].
pub fn read_bounded_from(reader: impl Read, limit: u64) -> Result<Vec<u8>, BoundedReadError> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(BoundedReadError::Io)?;
    if out.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(out)
}

/// Why [`read_line_bounded`] refused a line. Neither refusal quotes the line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The reader failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The line, with its newline, is longer than the bound.
    #[error("longer than {limit} bytes")]
    TooLong {
        /// The bound.
        limit: u64,
    },
    /// The line is not UTF-8.
    #[error("not UTF-8 (an invalid byte at column {column})")]
    NotUtf8 {
        /// The first invalid byte, from 1.
        column: usize,
    },
}

/// Reads the next line of `reader` into `buf`, at most `limit` bytes with its newline, and
/// returns how many bytes it took with the line as UTF-8, without its `\n` or `\r\n`; `None`
/// at the end of the input. A longer line is refused once `limit` bytes of it are read, so a
/// stream with no newline is never held whole.
pub fn read_line_bounded<'a>(
    reader: &mut impl io::BufRead,
    buf: &'a mut Vec<u8>,
    limit: u64,
) -> Result<Option<(usize, &'a str)>, LineError> {
    use io::BufRead;
    buf.clear();
    let n = reader
        .take(limit.saturating_add(1))
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n as u64 > limit {
        return Err(LineError::TooLong { limit });
    }
    let mut line = &buf[..];
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    let text = std::str::from_utf8(line).map_err(|e| LineError::NotUtf8 {
        column: e.valid_up_to() + 1,
    })?;
    Ok(Some((n, text)))
}

/// Opens `path` for appending (creating it with mode 0600 if needed).
pub fn open_append(path: &Path) -> Result<File, FileError> {
    create_private_dir(parent(path))?;
    let existed = path.exists();
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| FileError::io("open", path, e))?;
    if !existed {
        sync_dir(parent(path))?;
    }
    Ok(file)
}

/// Appends `bytes` to `file` (opened by [`open_append`]) and fdatasyncs it, so the appended
/// bytes are durable when this returns. `path` names the file in errors.
pub fn append_synced(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    file.write_all(bytes)
        .map_err(|e| FileError::io("append to", path, e))?;
    file.sync_data().map_err(|e| FileError::io("sync", path, e))
}

/// Refuses a secret file (or directory) that group or others can read or write: a private key
/// another user can read is no longer private, and one they can write is no longer ours.
pub fn check_private(path: &Path) -> Result<(), FileError> {
    let meta = fs::metadata(path).map_err(|e| FileError::io("inspect", path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a secret file after [`check_private`], or `None` if it does not exist.
pub fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match check_private(path) {
        Err(e) if e.is_not_found() => return Ok(None),
        other => other?,
    }
    read_optional(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn lines_are_bounded_and_utf8() {
        let mut buf = Vec::new();
        let mut input: &[u8] = b"one\r\ntwo\nthree";
        let mut lines = Vec::new();
        while let Some((_, line)) = read_line_bounded(&mut input, &mut buf, 16).unwrap() {
            lines.push(line.to_owned());
        }
        assert_eq!(lines, ["one", "two", "three"]);
        let mut long: &[u8] = &[b'a'; 100];
        let err = read_line_bounded(&mut long, &mut buf, 16).unwrap_err();
        assert_eq!(err.to_string(), "longer than 16 bytes");
        let mut zero = io::BufReader::new(File::open("/dev/zero").unwrap());
        assert!(read_line_bounded(&mut zero, &mut buf, 1 << 20).is_err());
        assert!(buf.len() <= (1 << 20) + 1);
        let mut binary: &[u8] = b"ab\xffc\n";
        let err = read_line_bounded(&mut binary, &mut buf, 16).unwrap_err();
        assert_eq!(err.to_string(), "not UTF-8 (an invalid byte at column 3)");
        let mut counted: &[u8] = b"a\r\nb";
        assert_eq!(
            read_line_bounded(&mut counted, &mut buf, 16).unwrap(),
            Some((3, "a"))
        );
    }

    /// State files must be regular: a directory, a FIFO (whose open would block without a
    /// writer) and a link to `/dev/zero` (endless) in their place are errors naming the path,
    /// returned at once; a missing file is `None` and a regular one is read whole.
    #[test]
    fn read_optional_reads_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("absent")).unwrap().is_none());
        let file = dir.path().join("state");
        fs::write(&file, b"state").unwrap();
        assert_eq!(read_optional(&file).unwrap().unwrap(), b"state");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for path in [dir.path().to_owned(), fifo, zero] {
            let err = read_optional(&path).unwrap_err().to_string();
            assert!(
                err.contains("not a regular file") && err.contains(&*path.to_string_lossy()),
                "{err}"
            );
            let err = read_optional_string(&path).unwrap_err().to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        // A sparse file claiming 8 TiB: an error naming it, not an allocation abort.
        let huge = dir.path().join("huge");
        let file = File::create(&huge).unwrap();
        if file.set_len(1 << 43).is_ok() {
            let err = read_optional(&huge).unwrap_err().to_string();
            assert!(err.contains("do not fit in memory"), "{err}");
        }
    }

    #[test]
    fn write_private_replaces_atomically_with_mode_0600_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file")]);
    }

    #[test]
    fn public_files_are_readable_by_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.vkey");
        write_public(&path, b"origin+1234+AQ==\n").unwrap();
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn create_private_refuses_an_existing_file_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_private(&path, b"first").unwrap();
        let err = create_private(&path, b"second").unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn racing_creators_produce_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || create_private(path, &[i; 64]).is_ok() as usize)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.iter().all(|b| *b == bytes[0]) && bytes.len() == 64);
    }

    #[test]
    fn concurrent_writers_of_one_file_never_collide_on_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_private(path, &[i; 32]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.len() == 32 && bytes.iter().all(|b| *b == bytes[0]));
    }

    #[test]
    fn bounded_reads_refuse_one_byte_more_and_endless_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap().len(), 10);
        assert!(matches!(
            read_bounded(&path, 9),
            Err(FileError::TooLarge { limit: 9, .. })
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 1 << 16),
            Err(FileError::TooLarge { .. })
        ));
    }

    #[test]
    fn secrets_readable_by_others_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        write_private(&path, b"k").unwrap();
        check_private(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_secret(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert_eq!(read_secret(&dir.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn appends_accumulate_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut f = open_append(&path).unwrap();
        append_synced(&mut f, &path, b"a\n").unwrap();
        append_synced(&mut f, &path, b"b\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a\nb\n");
        assert_eq!(mode(&path), 0o600);
    }
}
