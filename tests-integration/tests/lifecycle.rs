//! What a process holds, and gives back: a pool's workers let go of the
//! arrays the coordinator dropped when asked (`Pool::release_unused`, more
//! than one post's worth of them, a cancel left over from an idle moment
//! ignored); a threads backend, once dropped, leaves no thread that would
//! stop a pool from forking; file-backed arrays hold no descriptor while
//! they live and are removed by their drop after a `chdir` too.
//!
//! One single-threaded process (`harness = false`): pools fork, and a
//! `chdir` would disturb tests running beside it.

mod common;

use std::path::Path;
use std::process::ExitCode;

use ndarray::Array1;
use shmpar::{Backend, BackendKind, Pool, SegmentOptions, SharedArray};

use common::children;

/// Mappings of removed shared-memory objects in `pid`.
fn deleted_mappings(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/dev/shm/") && l.ends_with("(deleted)"))
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn release(pool: &Pool) -> Result<(), String> {
    let arrays: Vec<SharedArray<f64, ndarray::Ix1>> = (0..300)
        .map(|_| SharedArray::from_array(&Array1::from_elem(64, 1.0)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for a in &arrays {
        pool.map_reduce(a, |rows| rows.sum(), |x, y| x + y)
            .map_err(|e| e.to_string())?;
    }
    drop(arrays);
    let workers = children();
    let held: usize = workers.iter().map(|&w| deleted_mappings(w)).sum();
    if held == 0 {
        return Err("the workers held no mapping of the dropped arrays to begin with".into());
    }
    // A cancel requested while no job ran applies to none.
    pool.canceller().cancel();
    pool.release_unused()
        .map_err(|e| format!("release_unused: {e}"))?;
    if children() != workers {
        return Err(format!("the workers changed: {workers:?} -> {:?}", children()));
    }
    let left: usize = workers.iter().map(|&w| deleted_mappings(w)).sum();
    if left != 0 {
        return Err(format!("{left} mapping(s) of dropped arrays left of {held}"));
    }
    Ok(())
}

fn threads_then_fork() -> Result<(), String> {
    let backend = Backend::new(BackendKind::Threads, 2).map_err(|e| e.to_string())?;
    let a = SharedArray::from_array(&Array1::from_elem(100, 1.0)).map_err(|e| e.to_string())?;
    backend
        .map_reduce(&a, |rows| rows.sum(), |x, y| x + y)
        .map_err(|e| e.to_string())?;
    drop(backend);
    Pool::builder()
        .workers(2)
        .build()
        .map(drop)
        .map_err(|e| format!("a pool right after: {e}"))
}

fn files(dir: &Path) -> Result<(), String> {
    let d = dir.join("d");
    let e = dir.join("e");
    std::fs::create_dir_all(&d).map_err(|x| x.to_string())?;
    std::fs::create_dir_all(&e).map_err(|x| x.to_string())?;
    let before = open_fds();
    let live: Vec<SharedArray<f64, ndarray::Ix1>> = (0..100)
        .map(|i| SharedArray::create_with(&SegmentOptions::new().file(d.join(format!("f{i}"))), 4))
        .collect::<Result<_, _>>()
        .map_err(|x| x.to_string())?;
    let during = open_fds();
    drop(live);
    if during > before + 2 {
        return Err(format!(
            "100 live file-backed arrays held {} descriptors",
            during - before
        ));
    }
    let cwd = std::env::current_dir().map_err(|x| x.to_string())?;
    std::env::set_current_dir(&d).map_err(|x| x.to_string())?;
    let a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().file("relative"), 16);
    let created = a.is_ok() && d.join("relative").exists();
    std::env::set_current_dir(&e).map_err(|x| x.to_string())?;
    drop(a);
    std::env::set_current_dir(cwd).map_err(|x| x.to_string())?;
    if !created {
        return Err("the relative file-backed array was not created".into());
    }
    let left = d.join("relative").exists();
    let entries = std::fs::read_dir(&d).map_or(0, |r| r.count());
    if left || entries != 0 {
        return Err(format!("{entries} file(s) left in {}", d.display()));
    }
    Ok(())
}

fn main() -> ExitCode {
    let pool = match Pool::builder().workers(2).build() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("lifecycle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = std::env::temp_dir().join(format!("shmpar_t_lifecycle_{}", std::process::id()));
    let checks: [(&str, Result<(), String>); 3] = [
        (
            "release_unused lets go of every dropped array, whatever was cancelled while idle",
            release(&pool),
        ),
        (
            "file-backed arrays hold no descriptor and are removed after a chdir",
            files(&dir),
        ),
        ("a pool forks right after a threads backend is dropped", {
            drop(pool);
            threads_then_fork()
        }),
    ];
    let _ = std::fs::remove_dir_all(&dir);
    let mut failed = 0;
    for (name, result) in checks {
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
