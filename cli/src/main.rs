//! `shmpar`: list, inspect and clean up shared arrays; run and compare
//! kernels on worker processes, rayon threads and a single thread.
//!
//! See `docs/cli.md` for every subcommand with sample output.

fn main() {
    shmpar::init();
    // `shmpar_cli::main` returns only after everything it created (arrays,
    // pools) was dropped and so unlinked or stopped; only then may we exit.
    let code = shmpar_cli::main();
    std::process::exit(code);
}
