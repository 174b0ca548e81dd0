//! The one place the crate calls SQLite's C API directly (hence the one
//! `unsafe` allowance, see docs/DECISIONS.md): switching on the query
//! planner stability guarantee for every connection, which diesel's API
//! cannot do.
#![allow(unsafe_code)]

/// Give every SQLite connection this process opens from now on the query
/// planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`). Without it
/// the bundled SQLite (built with STAT4) marks a statement with a bound
/// `LIMIT ?` (diesel's `first()` and `limit()`) to be parsed and planned
/// again at every run, so the statement cache saves nothing; we never
/// `ANALYZE`, so no plan depended on bound values anyway. Registered once,
/// as an auto-extension (diesel does not hand out the raw handle).
pub fn sqlite_stable_plans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a function with the signature SQLite expects
        // of an extension entry point; it only sets a flag on the handle
        // SQLite passes it.
        let rc = unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(enable_qpsg)) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(rc, "cannot register the SQLite plan-stability hook");
        }
    });
}

unsafe extern "C" fn enable_qpsg(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::ffi::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::ffi::c_int {
    // SAFETY: `db` is the connection SQLite is opening; this option takes
    // an int (1: on) and an optional int pointer for the new value.
    unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        );
    }
    libsqlite3_sys::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use std::ffi::{CString, c_int};

    use libsqlite3_sys as ffi;

    /// Runs `SELECT .. WHERE a = ? LIMIT ?` (the shape of diesel's
    /// `first()`) five times on `db`; how many times SQLite re-prepared it.
    unsafe fn reprepares(db: *mut ffi::sqlite3) -> c_int {
        let sql = CString::new("SELECT b FROM t WHERE a = ? LIMIT ?").unwrap();
        let mut stmt = std::ptr::null_mut();
        unsafe {
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            for i in 0..5 {
                ffi::sqlite3_bind_int64(stmt, 1, i);
                ffi::sqlite3_bind_int64(stmt, 2, 1);
                while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {}
                ffi::sqlite3_reset(stmt);
            }
            let n = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            ffi::sqlite3_finalize(stmt);
            n
        }
    }

    #[test]
    fn sqlite_connections_keep_their_plans_with_a_bound_limit() {
        super::sqlite_stable_plans();
        let path = CString::new(":memory:").unwrap();
        let mut db = std::ptr::null_mut();
        unsafe {
            assert_eq!(ffi::sqlite3_open(path.as_ptr(), &mut db), ffi::SQLITE_OK);
            let ddl = CString::new(
                "CREATE TABLE t (a INTEGER, b INTEGER); CREATE INDEX t_a ON t (a);\
                 INSERT INTO t VALUES (1, 2), (2, 3);",
            )
            .unwrap();
            let rc = ffi::sqlite3_exec(
                db,
                ddl.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            let mut on: c_int = -1;
            ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_ENABLE_QPSG, -1 as c_int, &mut on);
            assert_eq!(on, 1, "a new connection has the guarantee");
            assert_eq!(reprepares(db), 0);
            // The measure sees the difference: without it, every run with
            // a new binding is parsed and planned again.
            ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
                0 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
            assert!(reprepares(db) >= 4);
            ffi::sqlite3_close(db);
        }
    }
}
