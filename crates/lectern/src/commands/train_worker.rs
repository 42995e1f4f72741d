//! `lectern train-worker FOLDER` (hidden): the training process of one job, started by the
//! server. It runs in the idle scheduling class (at nice 19), prints its progress as one JSON line per report on
//! stdout, writes its results (or `error.json`) into the folder, and exits when the server
//! that started it goes away (its stdin, the server's pipe, closes).

use std::io::{Read, Write};
use std::path::Path;

/// Moves this process to the idle scheduling class (CPU time only when inference leaves some;
/// the smallest weight of the fair scheduler), at nice 19 in case that is refused.
fn lower_priority() {
    // SAFETY: these calls only change this process's scheduling; the parameter outlives them.
    unsafe {
        libc::nice(19);
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

/// Runs the job in `folder`; the exit code is 0 on success, 1 on failure.
pub fn run(folder: &Path) -> i32 {
    lower_priority();
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => std::process::exit(3),
                Ok(_) => {}
            }
        }
    });
    let mut report = |p: lectern_train::Progress| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(&p).expect("json"));
        let _ = out.flush();
    };
    match lectern_train::job::run(folder, &mut report) {
        Ok(_) => 0,
        Err(e) => {
            let _ = lectern_train::job::write_failure(folder, &e);
            eprintln!("{e}");
            1
        }
    }
}
