//! Whole-database copies of SQLite files through SQLite's online backup API
//! (`sqlite3_backup_*`, from the `libsqlite3-sys` that sqlx links; sqlx itself does not wrap
//! it). The copy is one `sqlite3_backup_step(-1)`: it reads the source in one read
//! transaction, so it is a consistent snapshot, and in WAL mode it never blocks the source's
//! writers (nor restarts because of them, as a copy in several steps would); the destination
//! is written in one write transaction.
//!
//! A backup copies from sqlx's connection (its raw handle, locked), inside the read transaction
//! in which the snapshot's objects were listed; a restore copies between connections opened
//! here. Either way the copy is one blocking call.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;
use std::time::{Duration, Instant};

/// How long a copy waits for a lock (a writer checkpointing, a restore target being written).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An open database connection, closed on drop.
struct Connection(*mut ffi::sqlite3);

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the handle came from sqlite3_open_v2 (even a failed open returns one that
        // must be closed) and is closed once; every statement and backup made on it has been
        // finished before the drop.
        unsafe {
            ffi::sqlite3_close(self.0);
        }
    }
}

impl Connection {
    fn open(path: &Path, flags: i32) -> Result<Self, String> {
        let name = path.to_str().ok_or_else(|| format!("{} is not a UTF-8 path", path.display()))?;
        let name = CString::new(name).map_err(|_| format!("{} holds a NUL byte", path.display()))?;
        let mut handle = ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated string that outlives the call; `handle` receives
        // the connection (or an error connection, closed by the `Connection` drop).
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut handle, flags, ptr::null()) };
        let connection = Connection(handle);
        if handle.is_null() {
            return Err("out of memory".into());
        }
        if rc != ffi::SQLITE_OK {
            return Err(connection.message());
        }
        // SAFETY: a live connection.
        unsafe { ffi::sqlite3_busy_timeout(handle, LOCK_WAIT.as_millis() as i32) };
        Ok(connection)
    }

    /// The connection's last error message.
    fn message(&self) -> String {
        // SAFETY: a live connection; sqlite3_errmsg returns a NUL-terminated string it owns,
        // copied before any other call on the connection.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)).to_string_lossy().into_owned() }
    }

    /// Runs statements that return no rows the caller needs.
    fn execute(&self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "a statement holds a NUL byte".to_string())?;
        // SAFETY: a live connection and a NUL-terminated statement; no callback, no error
        // string requested (the message comes from sqlite3_errmsg).
        let rc = unsafe { ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.message())
        }
    }
}

/// Which side of a copy failed, and why (SQLite's message).
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source cannot be opened.
    Source(String),
    /// The destination cannot be opened or written.
    Destination(String),
    /// The copy itself failed (a lock held too long, a full disk, a corrupt page).
    Copy(String),
}

/// Copies the database `source` into `destination` (created when missing) as one snapshot;
/// `destination`'s previous content, if any, is replaced in one transaction. With `standalone`
/// the copy is switched to a rollback journal, so that it is one self-contained file (a copy
/// of a WAL database would otherwise still say WAL and need its `-wal` and `-shm` companions).
pub(crate) fn copy(source: &Path, destination: &Path, standalone: bool) -> Result<(), CopyError> {
    let from = Connection::open(source, ffi::SQLITE_OPEN_READONLY).map_err(CopyError::Source)?;
    // SAFETY: a live connection of our own, open until the end of this function.
    unsafe { copy_from(from.0, destination, standalone) }
}

/// As [`copy`], from an open connection (sqlx's, locked). When that connection has a read
/// transaction open, the copy is of that transaction's snapshot.
///
/// # Safety
/// `source` must be a live connection that nothing else uses until this returns.
pub(crate) unsafe fn copy_from(
    source: *mut ffi::sqlite3,
    destination: &Path,
    standalone: bool,
) -> Result<(), CopyError> {
    let to = Connection::open(destination, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE)
        .map_err(CopyError::Destination)?;
    let main = c"main";
    // SAFETY: two live, distinct connections (the caller vouches for `source`); the backup
    // object is finished below before the destination is closed.
    let backup = unsafe { ffi::sqlite3_backup_init(to.0, main.as_ptr(), source, main.as_ptr()) };
    if backup.is_null() {
        return Err(CopyError::Destination(to.message()));
    }
    let started = Instant::now();
    let outcome = loop {
        // SAFETY: a live backup object; -1 copies every page in one step.
        let rc = unsafe { ffi::sqlite3_backup_step(backup, -1) };
        match rc {
            ffi::SQLITE_DONE => break Ok(()),
            ffi::SQLITE_OK => continue,
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break Err(other),
        }
    };
    // SAFETY: finishes (and frees) the backup object exactly once; its code is the last
    // step's error, if any.
    let finished = unsafe { ffi::sqlite3_backup_finish(backup) };
    match outcome {
        Err(code) => {
            // SAFETY: sqlite3_errstr returns a static string.
            let text = unsafe { CStr::from_ptr(ffi::sqlite3_errstr(code)) }.to_string_lossy().into_owned();
            let detail = if to.message() == "not an error" { text } else { to.message() };
            return Err(CopyError::Copy(detail));
        }
        Ok(()) if finished != ffi::SQLITE_OK => return Err(CopyError::Copy(to.message())),
        Ok(()) => {}
    }
    if standalone {
        to.execute("PRAGMA journal_mode = DELETE").map_err(CopyError::Destination)?;
    }
    Ok(())
}
