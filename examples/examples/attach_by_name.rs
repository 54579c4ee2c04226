//! Two processes, one array: the first creates it and waits, the second
//! attaches by name and writes, and the first sees the writes. (The second
//! process is this same program, started again with the array's name.)
//!
//! Any process can attach the same way, Python included:
//! `python/shmpar_numpy.py`'s `attach(name)` gives a NumPy array over it.
//!
//! Run: `cargo run --release --example attach_by_name`

use std::process::Command;

use ndarray::Ix1;
use shmpar::SharedArray;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmpar::init();
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name] = args.as_slice() {
        if role == "--writer" {
            return writer(name);
        }
    }

    // The creator: a zeroed array under an unguessable name.
    let a = SharedArray::<f64, Ix1>::create(1_000)?;
    println!(
        "creator: made {} with {} zeros; starting the writer",
        a.name(),
        a.len()
    );
    let status = Command::new(std::env::current_exe()?)
        .args(["--writer", &a.name()])
        .status()?;
    assert!(status.success(), "the writer process failed: {status}");

    let view = a.view();
    assert!(
        view.iter().enumerate().all(|(i, &x)| x == (i * i) as f64),
        "the creator does not see the writer's values"
    );
    println!("creator: sees a[10] = {}, a[999] = {}", view[10], view[999]);
    println!("ok: the writes of another process, with no copy");
    Ok(()) // dropping `a` unlinks the segment: the creator owns it
}

/// The second process: attach by name, check dtype and rank, write.
fn writer(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut a = SharedArray::<f64, Ix1>::attach(name)?;
    for (i, x) in a.view_mut().iter_mut().enumerate() {
        *x = (i * i) as f64;
    }
    println!("writer:  attached {name} by name and wrote i*i into it");
    Ok(()) // an attached handle unmaps on drop, and never unlinks
}
