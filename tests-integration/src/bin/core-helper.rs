//! A second process for `shmpar-core`'s integration tests: it attaches to
//! or creates segments as told on its command line and reports the outcome
//! on stdout, one line, so tests can assert it.
//!
//! Usage:
//! - `attach-fill NAME VALUE`: attach to an f64 array of any rank and fill it;
//! - `attach-file-fill PATH VALUE`: the same for a file-backed array;
//! - `attach-as NAME DTYPE RANK`: attach with that element type and rank,
//!   print `ok` or the error's variant name;
//! - `attach-print NAME`: attach to an f64 array of any rank and print its
//!   elements in C order, separated by spaces;
//! - `attach-twice NAME`: attach twice while the first handle lives, print
//!   the second attach's outcome (`ok` or the error's variant name);
//! - `create NAME ELEMENTS`: create an f64 array, print `created` or the error;
//! - `create-file PATH ELEMENTS`: the same, backed by a file;
//! - `create-hold NAME`: create a small array, print `ready`, wait for stdin to close;
//! - `create-collect NAME`: create a small array, run `gc::collect`, print
//!   `kept` or `deleted` (what a pool start does to its own process's arrays);
//! - `collect`: run `gc::collect`, print `removed` and the names it removed;
//! - `create-loop PREFIX ELEMENTS`: print `looping`, then create and drop
//!   f64 arrays `PREFIX0`, `PREFIX1`, ... (alternately zero-filled and
//!   copied in) until killed;
//! - `fork-drop NAME`: create an array, fork; the child calls
//!   `cleanup_now` (as a program's own signal handler would), drops its
//!   copy and dies of SIGTERM; the parent prints `kept` or `removed`, then
//!   drops it.

#![cfg_attr(loom, allow(unused))]

#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
use std::io::{BufRead, Write};
#[cfg(not(loom))]
use std::process::ExitCode;

use ndarray::{Ix1, Ix2, Ix3, IxDyn};
#[cfg(not(loom))]
use shmpar_core::{Error, SegmentOptions, SharedArray};

#[cfg(not(loom))]
fn variant(err: &Error) -> String {
    let debug = format!("{err:?}");
    debug.split([' ', '{', '(']).next().unwrap_or_default().to_owned()
}

#[cfg(not(loom))]
fn attach_as<T: shmpar_core::Element>(name: &str, rank: &str) -> Result<(), Error> {
    match rank {
        "1" => SharedArray::<T, Ix1>::attach(name).map(drop),
        "2" => SharedArray::<T, Ix2>::attach(name).map(drop),
        "3" => SharedArray::<T, Ix3>::attach(name).map(drop),
        _ => SharedArray::<T, IxDyn>::attach(name).map(drop),
    }
}

#[cfg(not(loom))]
fn run(args: &[String]) -> Result<String, Error> {
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["attach-fill", name, value] => {
            let mut a = SharedArray::<f64, IxDyn>::attach(name)?;
            a.view_mut().fill(value.parse().expect("a number"));
            Ok("filled".into())
        }
        ["attach-file-fill", path, value] => {
            let mut a = SharedArray::<f64, IxDyn>::attach_file(path)?;
            a.view_mut().fill(value.parse().expect("a number"));
            Ok("filled".into())
        }
        ["attach-print", name] => {
            let a = SharedArray::<f64, IxDyn>::attach(name)?;
            let text: Vec<String> = a.view().iter().map(|x| x.to_string()).collect();
            Ok(text.join(" "))
        }
        ["attach-twice", name] => {
            let first = SharedArray::<f64, IxDyn>::attach(name)?;
            let second = SharedArray::<f64, IxDyn>::attach(name);
            drop(first);
            Ok(match second {
                Ok(_) => "ok".into(),
                Err(e) => variant(&e),
            })
        }
        ["attach-as", name, dtype, rank] => {
            match *dtype {
                "f32" => attach_as::<f32>(name, rank),
                "i32" => attach_as::<i32>(name, rank),
                _ => attach_as::<f64>(name, rank),
            }?;
            Ok("ok".into())
        }
        ["create", name, elements] => {
            let n: usize = elements.parse().expect("a count");
            let _a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().name(name), n)?;
            Ok("created".into())
        }
        ["create-file", path, elements] => {
            let n: usize = elements.parse().expect("a count");
            let _a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().file(path), n)?;
            Ok("created".into())
        }
        ["create-hold", name] => {
            let a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().name(name), 16)?;
            println!("ready {}", a.name());
            std::io::stdout().flush().ok();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).ok();
            Ok("released".into())
        }
        ["create-file-hold", path] => {
            let _a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().file(path), 16)?;
            println!("ready {path}");
            std::io::stdout().flush().ok();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).ok();
            Ok("released".into())
        }
        ["create-collect", name] => {
            let _a = SharedArray::<f64, _>::create_with(&SegmentOptions::new().name(name), 16)?;
            shmpar_core::gc::collect(false);
            let path = std::path::Path::new("/dev/shm").join(name);
            Ok(if path.exists() { "kept" } else { "deleted" }.into())
        }
        ["collect"] => {
            let removed: Vec<String> = shmpar_core::gc::collect(false)
                .into_iter()
                .map(|s| s.name)
                .collect();
            Ok(format!("removed {}", removed.join(" ")))
        }
        ["create-loop", prefix, elements] => create_loop(prefix, elements.parse().expect("a count")),
        ["fork-drop", name] => fork_drop(name),
        _ => panic!("unknown command {args:?}"),
    }
}

#[cfg(not(loom))]
fn create_loop(prefix: &str, elements: usize) -> Result<String, Error> {
    let source = ndarray::Array1::<f64>::from_elem(elements, 1.5);
    println!("looping");
    std::io::stdout().flush().ok();
    for i in 0.. {
        let options = SegmentOptions::new().name(&format!("{prefix}{i}"));
        let array = if i % 2 == 0 {
            SharedArray::<f64, _>::create_with(&options, elements)?
        } else {
            SharedArray::from_array_with(&options, &source)?
        };
        drop(array);
    }
    unreachable!("the loop ends by a signal")
}

#[cfg(not(loom))]
fn fork_drop(name: &str) -> Result<String, Error> {
    let array = SharedArray::<f64, _>::create_with(&SegmentOptions::new().name(name), 16)?;
    // SAFETY: this helper is single-threaded, so the child may run any code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child's copy of the registry (as a program's own signal
        // handler would use it while the child still holds its copy of the
        // handle), of the handle, and of the signal handler: none of them
        // may touch the parent's segment.
        shmpar_core::cleanup_now();
        drop(array);
        // SAFETY: raise and _exit take no memory arguments.
        unsafe {
            libc::raise(libc::SIGTERM);
            libc::_exit(0)
        }
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let exists = std::path::Path::new("/dev/shm").join(name).exists();
    let peeked = shmpar_core::segment::peek(&shmpar_core::Location::Shm(name.to_owned())).is_ok();
    drop(array);
    Ok(if exists && peeked { "kept" } else { "removed" }.into())
}

#[cfg(not(loom))]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            println!("{} {err}", variant(&err));
            ExitCode::from(2)
        }
    }
}
