//! `shmpar`: list, inspect and clean up shared arrays; run and compare kernels.

fn main() {
    shmpar::init();
    eprintln!("shmpar: the command-line tool is being written");
    std::process::exit(2);
}
